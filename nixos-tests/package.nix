# The exuvia CLI plus the example servers the tests run, built from this repository.
# Why one derivation: the VM needs both the service (examples/echo, examples/echo_sync)
# and the checker (`exuvia check --unit`) from the same commit.
{ lib, rustPlatform }:
let
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);
in
rustPlatform.buildRustPackage {
  pname = "exuvia";
  inherit (cargoToml.package) version;
  # Only what cargo reads, so editing the tests does not rebuild the package.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../README.md
      ../src
      ../examples
      ../templates
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "--bins" "--examples" ];
  # The crate's own tests need namespaces and a real systemd; the NixOS tests are the check.
  doCheck = false;
  postInstall = ''
    ex=$(find target -type d -path "*/release/examples" | head -n 1)
    install -Dm755 "$ex/echo" $out/bin/exuvia-echo
    install -Dm755 "$ex/echo_sync" $out/bin/exuvia-echo-new
  '';
  meta = {
    description = cargoToml.package.description;
    license = with lib.licenses; [ mit asl20 ];
    mainProgram = "exuvia";
    platforms = lib.platforms.linux;
  };
}
