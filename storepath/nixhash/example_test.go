package nixhash_test

import (
	"fmt"

	"github.com/nixcache/nixcache/storepath/nixhash"
)

func Example() {
	h, err := nixhash.Parse("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	if err != nil {
		panic(err)
	}
	fmt.Println(h)          // the narinfo form
	fmt.Println(h.Base16()) // the store database form
	fmt.Println(h.SRI())
	// Output:
	// sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73
	// sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
	// sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
}
