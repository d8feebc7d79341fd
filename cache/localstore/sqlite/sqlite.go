// Package sqlite lets [github.com/nixcache/nixcache/cache/localstore] read
// Nix's store database (db.sqlite) directly: importing it for its side
// effect registers a pure-Go SQLite driver under the name "sqlite".
//
//	import _ "github.com/nixcache/nixcache/cache/localstore/sqlite"
//
// Programs that read the local store often (push, the upload daemon) import
// it; without it localstore asks the nix command instead (nix path-info),
// which is slower but links no SQLite: a program that mostly reads a cache,
// such as verify (whose --repair needs the store only now and then), stays
// small. It is a package of its own for that reason alone.
package sqlite

import _ "modernc.org/sqlite" // registers the database/sql driver "sqlite"
