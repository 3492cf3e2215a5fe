//go:build !llms_buildtree

package llmserve

// The installed library, found through pkg-config (llmserve.pc).

// #cgo pkg-config: llmserve
import "C"
