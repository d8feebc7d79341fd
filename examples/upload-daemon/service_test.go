package main

import (
	"encoding/xml"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestLaunchdPlistMatchesUnit checks the launchd job against the systemd
// unit (no macOS here to load it): it is well-formed XML of key/value
// pairs, starts the same command line, waits for the /nix volume, and
// names the config file both commands read.
func TestLaunchdPlistMatchesUnit(t *testing.T) {
	data, err := os.ReadFile("org.nixcache.upload-daemon.plist")
	if err != nil {
		t.Fatal(err)
	}
	// Flatten the top-level dict into key -> raw value text.
	type value struct {
		XMLName xml.Name
		Inner   string `xml:",innerxml"`
	}
	var plist struct {
		Dict struct {
			Items []value `xml:",any"`
		} `xml:"dict"`
	}
	dec := xml.NewDecoder(strings.NewReader(string(data)))
	dec.Strict = true
	if err := dec.Decode(&plist); err != nil {
		t.Fatalf("plist is not well-formed XML: %v", err)
	}
	keys := map[string]value{}
	items := plist.Dict.Items
	for i := 0; i+1 < len(items); i += 2 {
		if items[i].XMLName.Local != "key" {
			t.Fatalf("item %d is <%s>, want <key>", i, items[i].XMLName.Local)
		}
		keys[items[i].Inner] = items[i+1]
	}
	if len(items)%2 != 0 {
		t.Fatalf("odd number of items in the plist dict")
	}
	if l := keys["Label"]; l.Inner != "org.nixcache.upload-daemon" {
		t.Errorf("Label = %q", l.Inner)
	}
	for _, k := range []string{"RunAtLoad", "KeepAlive"} {
		if v, ok := keys[k]; !ok || v.XMLName.Local != "true" {
			t.Errorf("%s must be <true/>", k)
		}
	}
	unit, err := os.ReadFile("nixcache-upload.service")
	if err != nil {
		t.Fatal(err)
	}
	exec := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindSubmatch(unit)
	if exec == nil {
		t.Fatal("no ExecStart in the systemd unit")
	}
	args := keys["ProgramArguments"].Inner
	script := strings.ReplaceAll(args, "&amp;", "&")
	if !strings.Contains(script, "/bin/wait4path /nix/store && exec "+string(exec[1])+"<") {
		t.Errorf("ProgramArguments %s do not wait for /nix/store and exec the unit's command %s", args, exec[1])
	}
	if env := keys["EnvironmentVariables"].Inner; !strings.Contains(env, "/etc/nixcache/hook.conf") || !strings.Contains(string(unit), "EnvironmentFile=/etc/nixcache/hook.conf") {
		t.Errorf("plist and unit must name the same config file")
	}
}
