// Package nixcache is a Go library for writing Nix binary caches, and the
// commands built on it: a Nix post-build hook that signs and uploads every
// path Nix builds, and an upload daemon that drains a durable queue so the
// hook never blocks or fails a build.
//
// The packages compose from the bottom up:
//
//   - [github.com/nixcache/nixcache/storepath]: store directories and store
//     paths, validated exactly as Nix does; with nixbase32 (Nix's base-32
//     encoding) and nixhash (hash values in every form Nix prints) below it.
//   - [github.com/nixcache/nixcache/nar]: the Nix ARchive format: a streaming
//     Writer and Reader in the style of archive/tar, DumpPath (byte-identical
//     to nix-store --dump), Restore (both with Nix's use-case-hack, on by
//     default on macOS as in Nix), and .ls listings.
//   - [github.com/nixcache/nixcache/signature]: Nix ed25519 key files,
//     detached signatures, verification against trusted keys.
//   - [github.com/nixcache/nixcache/narinfo]: .narinfo files, byte-identical
//     to what Nix writes, their fingerprint, signing, and nix-cache-info.
//   - [github.com/nixcache/nixcache/cache]: a narrow storage Backend
//     interface with a local directory backend (cache/file), an S3 backend
//     (cache/s3, which keeps its requests under an adaptive limit that backs
//     off on 503 SlowDown, 429 and Retry-After, so that a fleet of builders
//     shares a bucket's request rate, and whose multipart uploads of up to
//     5 TiB resume after a crash, sending only the parts the server lacks)
//     and a read-only HTTP(S) backend
//     (cache/http); store URLs
//     written as Nix users write them; the upload pipeline that pushes
//     closures (NAR dump, hash, compress, upload, sign, publish the narinfo
//     last; which paths are present is asked by listing for large
//     closures, by HEADs for small ones; paths an upstream cache serves are skipped:
//     PushOptions.SkipSignedBy, Upstream; build logs, realisations of
//     content-addressed derivations and debuginfo links go with them),
//     verifies them, repairs damaged
//     paths from the local store and adds signatures (key rotation);
//     fetching a store path back out, checked as a substituting Nix checks
//     it, without Nix; garbage collection beside live pushes (roots pinned
//     in the cache); NAR compression
//     (cache/compress); what the local Nix store knows (cache/localstore, the
//     only package that links SQLite); and the durable upload queue
//     (cache/queue).
//
// The commands under examples/ are thin mains over these packages.
package nixcache
