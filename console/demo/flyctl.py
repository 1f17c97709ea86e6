"""The demo's ``flyctl``: the commands the runbooks use, acting on the demo services.

    flyctl restart <app>                        POST <app>/admin/restart
    flyctl machine restart <id> -a <app>        the same, for the app's one machine (``<app>-1``)
    flyctl status -a <app>                      the app's release, uptime, restarts and health
    flyctl releases -a <app> [--image]          the app's recent releases (with their images)
    flyctl deploy --app <app> --image <image>   a new release running that image (a rollback
                                                deploys an earlier one: POST <app>/admin/deploy)

``<app>`` is ``storefront`` or ``sync-worker`` (the ``storefront_app`` / ``sync_worker_app``
variables). ``chatwoot`` (``chatwoot_app``) is known too: the demo plays Chatwoot inside the
storefront, so there is no Chatwoot app to act on, and each command says so and does nothing.
The stack writes a shim calling :func:`main` into its state dir (``bin/flyctl``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

from console.demo.state import DemoNotRunning, read_state

APPS = ("storefront", "sync-worker")
#: Apps the demo knows of but does not run (the Chatwoot of seed 000 is simulated by the storefront).
NOT_RUN = {"chatwoot": "Chatwoot is simulated inside the demo storefront (its chatwoot integration)"}


def _app_url(state: dict, app: str) -> str:
    urls = state["urls"]
    if app not in APPS:
        known = ", ".join((*APPS, *NOT_RUN))
        raise SystemExit(f'Error: Could not find App "{app}" (the demo has: {known})')
    return urls[app]


def machine_id(app: str) -> str:
    """The one machine of a demo app (``fly status`` lists it)."""
    return f"{app}-1"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flyctl", description="flyctl for the incident-console demo stack")
    sub = parser.add_subparsers(dest="command", required=True)
    restart = sub.add_parser("restart", help="restart an app's machines")
    restart.add_argument("app", nargs="?")
    restart.add_argument("-a", "--app", dest="app_flag")
    machine = sub.add_parser("machine", help="act on one machine of an app")
    machine_sub = machine.add_subparsers(dest="machine_command", required=True)
    machine_restart = machine_sub.add_parser("restart", help="restart one machine")
    machine_restart.add_argument("machine_id")
    machine_restart.add_argument("-a", "--app", dest="app_flag", required=True)
    status = sub.add_parser("status")
    status.add_argument("-a", "--app", dest="app_flag", required=True)
    releases = sub.add_parser("releases")
    releases.add_argument("-a", "--app", dest="app_flag", required=True)
    releases.add_argument("--image", action="store_true", help="show each release's image")
    deploy = sub.add_parser("deploy", help="deploy an image (an earlier one rolls back)")
    deploy.add_argument("-a", "--app", dest="app_flag", required=True)
    deploy.add_argument("-i", "--image", required=True)
    return parser


def main(argv: list[str], state_dir: str) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    app = getattr(args, "app", None) or args.app_flag
    if not app:
        parser.error("an app name is required")
    if app in NOT_RUN:
        print(f"{app}: {NOT_RUN[app]}; the demo runs no {app} app, nothing to {args.command} (no-op)")
        return 0
    try:
        state = read_state(Path(state_dir))
    except DemoNotRunning as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    url = _app_url(state, app)
    headers = {"Authorization": f"Bearer {Path(state['token_file']).read_text().strip()}"}
    try:
        with httpx.Client(timeout=10, headers=headers) as client:
            if args.command == "machine":
                if args.machine_id != machine_id(app):
                    print(
                        f"Error: machine {args.machine_id} not found in app {app} (machines: {machine_id(app)})",
                        file=sys.stderr,
                    )
                    return 1
                print(f"Restarting machine {args.machine_id} of app {app}...")
                answer = client.post(f"{url}/admin/restart").raise_for_status().json()
                print(f"  machine {args.machine_id} restarted (restart #{answer['restarts']})")
                return 0
            if args.command == "restart":
                print(f"Restarting machines of app {app}...")
                answer = client.post(f"{url}/admin/restart").raise_for_status().json()
                print(
                    f"  machine {machine_id(app)} restarted, release {answer['release']} (restart #{answer['restarts']})"
                )
                return 0
            if args.command == "deploy":
                print(f"==> Deploying {app} with image {args.image}")
                answer = client.post(f"{url}/admin/deploy", json={"image": args.image})
                if answer.status_code >= 400:
                    print(f"Error: {answer.json().get('error', answer.text)}", file=sys.stderr)
                    return 1
                print(f"  release {answer.json()['release']} deployed: {args.image}")
                return 0
            status = client.get(f"{url}/admin/status").raise_for_status().json()
            if args.command == "status":
                health = client.get(f"{url}/health").json().get("status", "?")
                up = time.time() - status["started_at"]
                print(
                    f"App\n  Name     = {app}\n  Hostname = {url.split('://', 1)[1]}\n  Release  = {status['release']}"
                )
                print(
                    f"\nMachines\nID          STATE    HEALTH  RESTARTS  UPTIME\n{machine_id(app)}  started  {health:<7} {status['restarts']:<9} {up:.0f}s"
                )
                return 0
            header = "VERSION  STATUS    DESCRIPTION          DATE"
            print(header + ("                  DOCKER IMAGE" if args.image else ""))
            for release in reversed(status["releases"]):
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(release["at"]))
                line = f"v{release['version']:<7} {release['status']:<9} {release['description']:<20} {when}"
                print(line + (f"  {release['image']}" if args.image else ""))
            return 0
    except httpx.HTTPError as exc:
        print(f"Error: {app}: {exc}", file=sys.stderr)
        return 1
