module harbor-ha/labs/hosts/standin_tls

go 1.26
