//go:build !wasip1

// berth_sdk_native.go: outside a component (go test on the build machine)
// there is no host; log lines go to hostLogSink, stderr unless a test
// replaces it, so a policy's logic and the SDK test natively.
package main

import (
	"fmt"
	"os"
)

var hostLogSink = func(level int32, message string) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", [...]string{"trace", "debug", "info", "warn", "error"}[level], message)
}

func hostLogString(level int32, message string) { hostLogSink(level, message) }
