//go:build linux && !(amd64 || 386 || arm || arm64 || riscv64 || loong64 || ppc64 || ppc64le || s390x)

package durable

// sysSyncfs: not known here; Syncfs falls back to sync(2).
const sysSyncfs = -1
