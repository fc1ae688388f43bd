//go:build tools

// Package tools only records the language host so that `go mod tidy`
// keeps its whole dependency graph in go.mod/go.sum.
package tools

import _ "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3"
