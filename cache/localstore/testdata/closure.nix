# A small closure with references, a diamond and a self-reference, used by
# live_test.go and record.sh. No nixpkgs: /bin/sh and coreutils only.
{ nonce ? "" }:
let
  mk = name: deps: derivation {
    inherit name nonce;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" ("mkdir $out; echo ${name} > $out/n; echo $out > $out/self"
      + builtins.concatStringsSep "" (map (d: "; echo ${d} >> $out/deps") deps)) ];
  };
  a = mk "lsx-a" [ ];
  b = mk "lsx-b" [ a ];
  c = mk "lsx-c" [ a ];
  d = mk "lsx-d" [ b c ];
  multi = derivation {
    name = "lsx-multi";
    inherit nonce;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    outputs = [ "out" "dev" ];
    args = [ "-c" "echo ${d} > $out; echo $out > $dev" ];
  };
in multi
