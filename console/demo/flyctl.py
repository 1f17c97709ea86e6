"""The demo's ``flyctl``: the three commands the runbooks use, acting on the demo services.

    flyctl restart <app>          POST <app>/admin/restart
    flyctl status -a <app>        the app's release, uptime, restarts and health
    flyctl releases -a <app>      the app's recent releases

``<app>`` is ``storefront`` or ``sync-worker`` (the ``storefront_app`` / ``sync_worker_app``
variables). The stack writes a shim calling :func:`main` into its state dir (``bin/flyctl``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

from console.demo.state import DemoNotRunning, read_state


def _app_url(state: dict, app: str) -> str:
    urls = state["urls"]
    if app not in ("storefront", "sync-worker"):
        raise SystemExit(f'Error: Could not find App "{app}" (the demo has: storefront, sync-worker)')
    return urls[app]


def main(argv: list[str], state_dir: str) -> int:
    parser = argparse.ArgumentParser(prog="flyctl", description="flyctl for the incident-console demo stack")
    sub = parser.add_subparsers(dest="command", required=True)
    restart = sub.add_parser("restart", help="restart an app's machines")
    restart.add_argument("app", nargs="?")
    restart.add_argument("-a", "--app", dest="app_flag")
    for name in ("status", "releases"):
        p = sub.add_parser(name)
        p.add_argument("-a", "--app", dest="app_flag", required=True)
    args = parser.parse_args(argv)
    app = getattr(args, "app", None) or args.app_flag
    if not app:
        parser.error("an app name is required")
    try:
        state = read_state(Path(state_dir))
    except DemoNotRunning as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    url = _app_url(state, app)
    headers = {"Authorization": f"Bearer {Path(state['token_file']).read_text().strip()}"}
    try:
        with httpx.Client(timeout=10, headers=headers) as client:
            if args.command == "restart":
                print(f"Restarting machines of app {app}...")
                answer = client.post(f"{url}/admin/restart").raise_for_status().json()
                print(
                    f"  machine {app}-1 restarted, release {answer['release']} (restart #{answer['restarts']})"
                )
                return 0
            status = client.get(f"{url}/admin/status").raise_for_status().json()
            if args.command == "status":
                health = client.get(f"{url}/health").json().get("status", "?")
                up = time.time() - status["started_at"]
                print(
                    f"App\n  Name     = {app}\n  Hostname = {url.split('://', 1)[1]}\n  Release  = {status['release']}"
                )
                print(
                    f"\nMachines\nID          STATE    HEALTH  RESTARTS  UPTIME\n{app}-1  started  {health:<7} {status['restarts']:<9} {up:.0f}s"
                )
                return 0
            print("VERSION  STATUS    DESCRIPTION  DATE")
            for release in reversed(status["releases"]):
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(release["at"]))
                print(f"v{release['version']:<7} {release['status']:<9} {release['description']:<12} {when}")
            return 0
    except httpx.HTTPError as exc:
        print(f"Error: {app}: {exc}", file=sys.stderr)
        return 1
