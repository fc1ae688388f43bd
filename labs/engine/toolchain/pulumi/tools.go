//go:build tools

// Package tools only records the upstream main package so that `go mod tidy`
// keeps its whole dependency graph in go.mod/go.sum.
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
