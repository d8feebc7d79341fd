// Package durable says what a file system keeps across a power cut beyond
// what each fsync(2) promises on its own: whether renames survive in the
// order they were made (KeepsRenameOrder), and whether an fsync of a
// directory also writes the inodes of the entries just created in it
// (Unjournaled says where it does not). cache/file and cache/queue choose
// their fsyncs by it. It uses the syscall package only, so that the
// post-build hook, which links cache/queue, stays cheap to start.
package durable
