package localstore_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nixcache/nixcache/cache/localstore"
	_ "github.com/nixcache/nixcache/cache/localstore/sqlite"
	"github.com/nixcache/nixcache/storepath"
)

// A post-build hook learns what to upload: the outputs of DRV_PATH (Nix
// 2.8 leaves OUT_PATHS empty), then their closure, references first.
func Example() {
	ctx := context.Background()
	s, err := localstore.Open(ctx, localstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	outs, err := s.DerivationOutputs(ctx, "/nix/store/r9m96vbzpafw7psrm19pq1kms374mzvc-lsx-multi.drv")
	if err != nil {
		log.Fatal(err)
	}
	infos, err := s.ClosureInfos(ctx, outs)
	if err != nil {
		log.Fatal(err)
	}
	for _, pi := range infos {
		fmt.Println(pi.Path, pi.NarHash, pi.NarSize, len(pi.References))
	}
}

// Open falls back to `nix path-info --json` when the database is not
// readable; Mode says which one is in use.
func ExampleOpen() {
	s, err := localstore.Open(context.Background(), localstore.Options{Mode: localstore.ModeAuto})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	pi, err := s.PathInfo(context.Background(), storepath.Path("/nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-lsx-multi"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Mode(), pi.NarSize)
}
