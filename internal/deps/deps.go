// Package deps pins the module's chosen dependencies while packages are written.
package deps

import (
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/minio/minio-go/v7"
	_ "github.com/ulikunitz/xz"
	_ "modernc.org/sqlite"
)
