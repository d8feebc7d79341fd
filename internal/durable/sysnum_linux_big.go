//go:build linux && (ppc64 || ppc64le || s390x)

package durable

// sysSyncfs is syncfs(2)'s system call number here (the syscall package
// predates it).
const sysSyncfs = 348
