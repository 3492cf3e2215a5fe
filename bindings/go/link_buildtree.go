//go:build llms_buildtree

package llmserve

// The repository's build tree: `make go-test` builds with -tags
// llms_buildtree and sets CGO_CFLAGS (-I include) and CGO_LDFLAGS (-L lib
// and an rpath), so no pkg-config file is needed.

// #cgo LDFLAGS: -lllmserve
import "C"
