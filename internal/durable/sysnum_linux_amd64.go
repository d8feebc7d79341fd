//go:build linux && amd64

package durable

// sysSyncfs is syncfs(2)'s system call number here (the syscall package
// predates it).
const sysSyncfs = 306
