package nixbase32_test

import (
	"fmt"

	"github.com/nixcache/nixcache/storepath/nixbase32"
)

func Example() {
	digest, err := nixbase32.DecodeString("00bgd045z0d4icpbc2yyz4gx48ak44la")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%x\n", digest)
	fmt.Println(nixbase32.EncodeToString(digest))
	// Output:
	// 8a12321522fd91efbd60ebb2481af88580f61600
	// 00bgd045z0d4icpbc2yyz4gx48ak44la
}
