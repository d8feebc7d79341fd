package cache

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestParsePinTorn is the regression test for a collection that stopped
// (and could have lost a pin's tail) on a pin read while a push replaced it:
// versitygw serves a GET racing a PUT of the same key a torn file. A pin
// written by Pin is framed, so every cut is seen and the pin read again; a
// hand-written pin is read as it is.
func TestParsePinTorn(t *testing.T) {
	paths := []string{
		"/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a",
		"/nix/store/11bgd045z0d4icpbc2yyz4gx48ak44la-b",
		"/nix/store/22bgd045z0d4icpbc2yyz4gx48ak44la-c",
	}
	whole := pinHeader + strings.Join(paths, "\n") + "\n" + fmt.Sprintf("%s%d paths\n", pinFooter, len(paths))
	g := &collector{ids: map[[20]byte]int32{}}
	ids, err := g.parsePin(whole)
	if err != nil || len(ids) != len(paths) {
		t.Fatalf("whole pin: %d paths, %v", len(ids), err)
	}
	// Every cut of the framed pin is a torn read, never a shorter pin.
	for n := 0; n < len(whole); n++ {
		if _, err := g.parsePin(whole[:n]); !errors.Is(err, errTornPin) {
			t.Fatalf("pin cut at byte %d: %v, want errTornPin", n, err)
		}
	}
	// A footer that counts other paths is torn too.
	if _, err := g.parsePin(pinHeader + paths[0] + "\n" + pinFooter + "2 paths\n"); !errors.Is(err, errTornPin) {
		t.Fatalf("wrong count: %v", err)
	}
	// A hand-written pin (no header) is read as it is; a bad line is an error.
	if ids, err := g.parsePin("# release\n" + paths[1] + "\n"); err != nil || len(ids) != 1 {
		t.Fatalf("hand-written pin: %d paths, %v", len(ids), err)
	}
	if _, err := g.parsePin(paths[0] + "\n/nix/store/short\n"); err == nil || errors.Is(err, errTornPin) || !strings.Contains(err.Error(), " line 2: ") {
		t.Fatalf("bad hand-written pin: %v", err)
	}
}
