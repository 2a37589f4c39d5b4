# NixOS VM tests of the example echo service: the scenarios of tests/systemd/ (the Debian
# nspawn/qemu matrix), with the units `exuvia unit --format nixos` generates
# (./exuvia-echo.nix) and every reload judged by `exuvia check --unit` inside the VM.
#
#   nix build .#checks.x86_64-linux.reload      (or: nix flake check)
#   nix-build nixos-tests -A reload             (without flakes; needs <nixpkgs>)
{
  pkgs ? import <nixpkgs> { },
  exuvia ? pkgs.callPackage ./package.nix { },
}:
let
  inherit (pkgs) lib;
  inherit (import ./lib.nix { inherit pkgs exuvia; }) mkReloadTest;

  # The binary the unit starts. A mutable symlink (as /run/current-system/sw/bin is), so
  # the replace and broken scenarios can swap it the way a package upgrade does; the
  # library re-executes the path it was started with (argv[0]), not /proc/self/exe.
  bin = "/var/lib/exuvia-test/exuvia-echo";
  # The generated module names the /usr/local/bin path of units/exuvia-echo.toml in ExecStart=
  # and in ExecReload= (the binary is its own reload client, `@BIN exuvia-reload …`): point
  # both at the test's binary, keeping everything else exactly as generated.
  generated = (import ./exuvia-echo.nix).systemd.services."exuvia-echo".serviceConfig;
  retarget = builtins.replaceStrings [ "/usr/local/bin/exuvia-echo" ] [ bin ];
  echoModule =
    { lib, ... }:
    {
      imports = [ ./exuvia-echo.nix ];
      systemd.services.exuvia-echo.serviceConfig.ExecStart = lib.mkForce (retarget generated.ExecStart);
      systemd.services.exuvia-echo.serviceConfig.ExecReload = lib.mkForce (retarget generated.ExecReload);
      systemd.tmpfiles.rules = [
        "d /var/lib/exuvia-test 0755 root root -"
        "L+ ${bin} - - - - ${exuvia}/bin/exuvia-echo"
      ];
    };
  # Test deadlines, as the Debian harness sets them: through the EXUVIA_* variables the unit
  # hands the service (they win over the example's flags), within the unit's timeouts.
  withDeadlines =
    { ready, hard }:
    {
      systemd.services.exuvia-echo.environment = {
        EXUVIA_READY_TIMEOUT = lib.mkForce ready;
        EXUVIA_DRAIN_HARD = lib.mkForce hard;
      };
    };

  common = {
    module = echoModule;
    service = "exuvia-echo.service";
    socket = "exuvia-echo.socket";
    target = "tcp:127.0.0.1:8080";
  };
  # Swap the binary atomically (rename over the symlink), as a package manager does.
  swap = to: ''machine.succeed("ln -sfn ${to} ${bin}.new && mv -Tf ${bin}.new ${bin}")'';
in
{
  # 50 reloads under load: 0 failed requests, a new MainPID each time, same InvocationID.
  reload = mkReloadTest (common // { name = "exuvia-reload"; reloads = 50; });

  # The binary is replaced by a different program, then reloaded twice (onto the new
  # program, then driven by it); afterwards only the new program answers.
  replace = mkReloadTest (common // {
    name = "exuvia-replace";
    reloads = 2;
    interval = "300ms";
    preCheck = swap "${exuvia}/bin/exuvia-echo-new";
    postCheck = ''
      answer = machine.succeed("exec 3<>/dev/tcp/127.0.0.1/8080; echo VERSION >&3; head -n 1 <&3")
      assert answer.startswith("exuvia-example echo_sync"), answer
    '';
  });

  # A successor that cannot start leaves the old process serving (same MainPID, StatusText
  # says why); after the good binary is back, the check's reloads pass. The reload client is
  # the binary on disk, so with a broken one `systemctl reload` fails before any upgrade is
  # tried; the reload signal then drives the upgrade itself, which fails cleanly.
  broken = mkReloadTest (common // {
    name = "exuvia-broken";
    reloads = 3;
    extraModules = [ (withDeadlines { ready = "3s"; hard = "10s"; }) ];
    preCheck = ''
      machine.succeed("printf '#!/bin/sh\\nexit 1\\n' > /var/lib/exuvia-test/broken && chmod 755 /var/lib/exuvia-test/broken")
      ${swap "/var/lib/exuvia-test/broken"}
      pid = unit_props()["MainPID"]
      machine.fail(f"systemctl reload {SERVICE}")
      assert unit_props()["MainPID"] == pid, "a failed reload client must not touch the main"
      machine.succeed(f"systemctl kill --kill-whom=main --signal=SIGHUP {SERVICE}")
      machine.wait_until_succeeds(f"systemctl show -P StatusText {SERVICE} | grep -q 'upgrade failed'", timeout=30)
      p = unit_props()
      assert p["MainPID"] == pid and p["ActiveState"] == "active", p
      assert p["InvocationID"] == before["InvocationID"], p
      ${swap "${exuvia}/bin/exuvia-echo"}
    '';
  });

  # After handovers, `systemctl stop` waits for every generation to drain and exit by
  # itself: Result=success, nothing SIGKILLed, within TimeoutStopSec.
  stop = mkReloadTest (common // {
    name = "exuvia-stop";
    reloads = 3;
    interval = "100ms";
    extraModules = [ (withDeadlines { ready = "5s"; hard = "7s"; }) ];
    postCheck = ''
      cursor = machine.succeed("journalctl -n 0 --show-cursor | sed -n 's/^-- cursor: //p'").strip()
      machine.succeed(f"timeout 60 systemctl stop {SOCKET} {SERVICE}")
      p = unit_props()
      assert p["Result"] == "success" and p["ActiveState"] == "inactive", p
      journal = machine.succeed(f"journalctl --no-pager -o cat -u {SERVICE} --after-cursor '{cursor}'")
      assert "SIGKILL" not in journal and "timed out" not in journal, journal
    '';
  });

  # The main process is SIGKILLed after a handover: Restart=on-failure brings it back
  # (NRestarts + 1) and the socket queues clients meanwhile; then reloads work again.
  sigkill = mkReloadTest (common // {
    name = "exuvia-sigkill";
    reloads = 3;
    preCheck = ''
      machine.succeed(f"systemctl reload {SERVICE}")
      victim = unit_props()["MainPID"]
      machine.succeed(f"kill -KILL {victim}")
      machine.wait_until_succeeds(
          f"test \"$(systemctl show -P NRestarts {SERVICE})\" = {int(before['NRestarts']) + 1}"
          f" && test \"$(systemctl show -P ActiveState {SERVICE})\" = active", timeout=30)
      before = unit_props()  # the check below judges the restarted instance
      assert before["MainPID"] != victim, before
    '';
  });

  # `systemctl restart` with the socket holding the listener: a new instance (new
  # InvocationID), and no request fails — SIGTERM drains in-flight requests, new
  # connections wait in the socket's backlog. Long-lived connections are not expected to
  # survive a restart (that is what reloads are for), so the load is one request per
  # connection. Then the check's reloads pass on the new instance.
  restart = mkReloadTest (common // {
    name = "exuvia-restart";
    reloads = 3;
    extraModules = [ (withDeadlines { ready = "5s"; hard = "5s"; }) ];
    preCheck = ''
      machine.succeed(
          "exuvia load --target tcp:127.0.0.1:8080 --mode echo --connections 16 --duration 60s"
          " --until-file /tmp/stop-load --json /tmp/load.json >/tmp/load.out 2>&1 &"
      )
      machine.sleep(1)
      for i in range(3):
          inv = unit_props()["InvocationID"]
          machine.succeed(f"systemctl restart {SERVICE}")
          p = unit_props()
          assert p["ActiveState"] == "active" and p["InvocationID"] != inv, p
          machine.sleep(1)
      machine.succeed("touch /tmp/stop-load")
      machine.wait_until_succeeds("test -s /tmp/load.json", timeout=60)
      load = json.loads(machine.succeed("cat /tmp/load.json"))
      assert load["failed"] == 0 and load["ok"] > 0, load
      before = unit_props()
    '';
  });
}
