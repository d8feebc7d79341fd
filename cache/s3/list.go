package s3

import (
	"context"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/nixcache/nixcache/cache"
)

// ListShallow calls fn for every object whose key starts with prefix and
// has no "/" after it (a ListObjectsV2 with delimiter "/"): the objects
// under nar/, log/ and other folders are not listed, nor read by the
// server. cache.Cache.Present lists narinfos this way (cache.ShallowLister).
func (b *Backend) ListShallow(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	return b.list(ctx, prefix, false, fn)
}

// list is List (recursive) or ListShallow.
func (b *Backend) list(ctx context.Context, prefix string, recursive bool, fn func(cache.ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine when fn fails
	for oi := range b.client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: recursive}) {
		if oi.Err != nil {
			return b.wrap("list", prefix, oi.Err)
		}
		key := strings.TrimPrefix(oi.Key, b.prefix)
		if strings.HasSuffix(key, "/") {
			continue // a directory marker, or a folder (common prefix) of a shallow listing
		}
		if err := fn(cache.ObjectInfo{Key: key, Size: oi.Size, ModTime: oi.LastModified}); err != nil {
			return err
		}
	}
	return ctx.Err()
}
