# Offline shape check of the NixOS tests (CI has no nixpkgs and no binary cache).
# Evaluates default.nix and flake-style use of lib.nix against a tiny mock of `pkgs`:
# runNixOSTest returns its argument, so every test's name, node modules and testScript
# are forced (every interpolation, every module function called). The result maps test
# names to their Python test scripts; check-offline.sh compiles those with python3.
# What it cannot check: NixOS option names and types, and the package build.
let
  inherit (builtins)
    concatStringsSep
    map
    replaceStrings
    stringLength
    substring
    isFunction
    isPath
    isAttrs
    deepSeq
    mapAttrs
    ;
  lib = rec {
    escapeShellArg = a: "'${replaceStrings [ "'" ] [ "'\\''" ] (toString a)}'";
    escapeShellArgs = as: concatStringsSep " " (map escapeShellArg as);
    optionalString = c: s: if c then s else "";
    removeSuffix =
      suf: s:
      let
        n = stringLength s;
        m = stringLength suf;
      in
      if m <= n && substring (n - m) m s == suf then substring 0 (n - m) s else s;
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkForce = mkOverride 50;
  };
  exuvia = "/nix/store/00000000000000000000000000000000-exuvia-mock";
  pkgs = {
    inherit lib;
    testers.runNixOSTest = t: t;
    callPackage = _: _: exuvia;
  };
  # Call a module the way the module system would, recursively through imports.
  forceModule =
    m:
    let
      v = if isPath m then import m else m;
      r = if isFunction v then v { inherit lib pkgs; config = { }; } else v;
    in
    assert isAttrs r;
    deepSeq r (map forceModule (r.imports or [ ]));
  forceTest =
    t:
    assert isFunction t.nodes.machine;
    deepSeq (forceModule t.nodes.machine) t.testScript;
  tests = import ./. { inherit pkgs exuvia; };
  # A user's call of the reusable function, with the defaults (socket = null, no hooks).
  user = (import ./lib.nix { inherit pkgs exuvia; }).mkReloadTest {
    module = { ... }: { systemd.services.my-service = { }; };
    service = "my-service.service";
    target = "tcp:127.0.0.1:9000";
  };
in
mapAttrs (_: forceTest) tests // { user-default = forceTest user; }
