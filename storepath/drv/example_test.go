package drv_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/nixcache/nixcache/storepath/drv"
)

// The outputs parser reads only the head of the derivation.
func Example() {
	d := `Derive([("dev","/nix/store/sjckycqs93xg1s65cidrl4v67pkb41rs-lsx-multi-dev","",""),` +
		`("out","/nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-lsx-multi","","")],[],[],"x86_64-linux","/bin/sh",[],[])`
	outs, err := drv.ParseOutputs(strings.NewReader(d))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(outs["out"])
	fmt.Println(outs["dev"])
	// Output:
	// /nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-lsx-multi
	// /nix/store/sjckycqs93xg1s65cidrl4v67pkb41rs-lsx-multi-dev
}

// A post-build hook reads the outputs of DRV_PATH from the file.
func ExampleReadOutputs() {
	outs, err := drv.ReadOutputs("testdata/lsx-multi.drv")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(outs), outs["out"])
	// Output:
	// 2 /nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-lsx-multi
}
