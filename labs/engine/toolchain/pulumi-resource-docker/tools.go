//go:build tools

// Package tools only records the provider's main package so that `go mod tidy`
// keeps its whole dependency graph in go.mod/go.sum.
package tools

import _ "github.com/pulumi/pulumi-docker/provider/v5/cmd/pulumi-resource-docker"
