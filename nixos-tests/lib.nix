# mkReloadTest: the zero-downtime reload test of this repository, for any service.
#
# Why a function: the promise "no request fails during `systemctl reload`" is checked by
# `exuvia check --unit` inside a NixOS VM, and the same check applies to every service that
# uses the library; a user passes their module and unit names and gets a runNixOSTest
# derivation (see README.md, "NixOS VM tests").
#
#   mkReloadTest {
#     module = ./my-service.nix;          # declares the service (+ socket), e.g. from
#                                          # `exuvia unit --format nixos`
#     service = "my-service.service";
#     socket = "my-service.socket";       # null if the service binds its own listeners
#     target = "tcp:127.0.0.1:8080";
#     reloads = 50;
#   }
{ pkgs, exuvia }:
let
  inherit (pkgs) lib;
  py = builtins.toJSON; # a JSON string is a valid Python string literal
in
{
  mkReloadTest =
    {
      module,
      service,
      target,
      socket ? null,
      name ? "exuvia-reload-${lib.removeSuffix ".service" service}",
      reloads ? 50,
      # echo | long | http, as `exuvia check --mode`.
      mode ? "echo",
      connections ? 16,
      interval ? "200ms",
      # More `exuvia check` arguments, e.g. [ "--path" "/healthz" ].
      checkArgs ? [ ],
      # Python run before / after the check; `machine` is in scope, and after it also
      # `report` (the check's JSON) and `unit_props()` (systemctl show as a dict).
      preCheck ? "",
      postCheck ? "",
      # The package that provides `exuvia` (the checker) in the VM.
      checker ? exuvia,
      extraModules ? [ ],
    }:
    let
      checkCmd = lib.escapeShellArgs (
        [
          "exuvia"
          "check"
          "--unit"
          service
          "--target"
          target
          "--mode"
          mode
          "--connections"
          (toString connections)
          "--reloads"
          (toString reloads)
          "--interval"
          interval
          "--json"
          "/tmp/exuvia-check.json"
        ]
        ++ checkArgs
      );
    in
    pkgs.testers.runNixOSTest {
      inherit name;
      nodes.machine =
        { ... }:
        {
          imports = [ module ] ++ extraModules;
          environment.systemPackages = [ checker ];
          virtualisation.memorySize = 1024;
          virtualisation.cores = 2;
        };
      testScript = ''
        import json

        SERVICE = ${py service}
        SOCKET = ${if socket == null then "None" else py socket}
        RELOADS = ${toString reloads}


        def unit_props(unit=SERVICE):
            out = machine.succeed(
                f"systemctl show -p MainPID -p InvocationID -p ActiveState -p SubState"
                f" -p NRestarts -p StatusText -p Result {unit}"
            )
            return dict(line.split("=", 1) for line in out.strip().splitlines())


        def run_check(cmd):
            rc, out = machine.execute(cmd + " 2>&1")
            print(out)
            report = json.loads(machine.succeed("cat /tmp/exuvia-check.json"))
            assert rc == 0 and report["pass"], f"exuvia check failed (rc {rc}): {report['reasons']}"
            assert report["load"]["failed"] == 0, f"{report['load']['failed']} failed requests"
            return report


        machine.wait_for_unit("multi-user.target")
        if SOCKET is not None:
            machine.succeed(f"systemctl start {SOCKET}")
        machine.succeed(f"systemctl start {SERVICE}")
        machine.wait_for_unit(SERVICE)
        before = unit_props()

        ${preCheck}

        report = run_check(${py checkCmd})
        assert report["main_pid_changes"] == RELOADS, report["main_pid_changes"]
        after = unit_props()
        # Independent of the checker: same invocation, not restarted, active, new main.
        assert after["InvocationID"] == before["InvocationID"], (before, after)
        assert after["NRestarts"] == before["NRestarts"], (before, after)
        assert after["ActiveState"] == "active", after
        assert after["MainPID"] != before["MainPID"], (before, after)
        machine.copy_from_vm("/tmp/exuvia-check.json", "")

        ${postCheck}
      '';
    };
}
