package storepath_test

import (
	"fmt"

	"github.com/nixcache/nixcache/storepath"
)

func Example() {
	p, err := storepath.DefaultDir.Parse("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432")
	if err != nil {
		panic(err)
	}
	fmt.Println(p.HashPart() + ".narinfo")
	fmt.Println(p.Name())
	_, err = storepath.Parse("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a b")
	fmt.Println(err)
	// Output:
	// 00bgd045z0d4icpbc2yyz4gx48ak44la.narinfo
	// net-tools-1.60_p20170221182432
	// storepath: "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a b": invalid store path: name has illegal character ' ' at offset 1
}
