package file

import (
	"context"
	"testing"
)

// BenchmarkStageCommit writes a 256 MiB object through Stage in 1 MiB
// writes and commits it (fsync, rename, directory fsync), as Push does with
// a large NAR file: the writeback started as the file grows leaves the
// final fsync little to write.
func BenchmarkStageCommit(b *testing.B) {
	const size = 256 << 20
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	be, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(size)
	for range b.N {
		s, err := be.Stage(ctx, "nar")
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < size; n += len(buf) {
			if _, err := s.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Commit(ctx, "nar/big.nar"); err != nil {
			b.Fatal(err)
		}
	}
}
