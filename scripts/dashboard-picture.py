#!/usr/bin/env python3
"""A check of every PromQL expression in docs/grafana-ekms.json against real data, and a picture
of the dashboard from that data (docs/dashboard.png). Run by hand, not by CI.

What it does, all on loopback, in a fresh temporary directory:

1. starts `ekms dev --metrics-listen` (the mock enclave and the parent), and a Prometheus of its
   own (its own config and data dir, scraping the parent every 5 s);
2. drives a few minutes of mixed load: `ekms bench` in turn on Encrypt, Decrypt,
   GenerateDataKey and CreateKey, while a boto3 thread sends requests that succeed
   (DescribeKey, ListKeys) and requests that fail (a garbled ciphertext, an unknown key, a
   disabled key, a wrong secret key), and keys of several specs in several states exist;
3. checks each expression of the dashboard (its panels' targets and its `instance` variable)
   against that Prometheus, as Grafana would send it (`$instance` as its "All" value `.*`,
   `$__rate_interval` as Grafana computes it for a 5 s scrape interval: 4 x 5 s = 20s): the
   instant query must succeed and return series, and so must the range query over the run;
   exits non-zero, naming the expression, if one does not;
4. renders the dashboard's panels (the same titles, layout, expressions, legends and units)
   from the range queries with matplotlib into one PNG. Grafana shows the same queries.

Every process it starts is stopped at the end (also on failure or Ctrl-C).

Needs: target/release/ekms (`cargo build --release --bins`), Debian's `prometheus`, and python3
with boto3 and matplotlib (`pip install boto3 matplotlib`).

    scripts/dashboard-picture.py                      # about 4 minutes of load
    scripts/dashboard-picture.py --minutes 2 --out /tmp/dashboard.png
    scripts/dashboard-picture.py --check-only         # the checks, no picture
    scripts/dashboard-picture.py --keep               # keep the run's directory, then:
    scripts/dashboard-picture.py --from-run /tmp/ekms-dashboard-XXXX   # check, render again
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(ROOT, "docs", "grafana-ekms.json")
SCRAPE_SECONDS = 5
# Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval); over a
# few minutes $__interval is under a second, so 4 x 5 s.
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS}s"
BENCH_OPS = [("encrypt", 20, 8), ("decrypt", 20, 8), ("generate-data-key", 20, 8), ("create-key", 3, 2)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.5)
    sys.exit(f"dashboard-picture: {what} did not come up within {timeout:.0f} s")


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Processes:
    """The processes this script started, stopped in reverse order by their own ids."""

    def __init__(self):
        self.children = []

    def start(self, args, log_path, env=None):
        log = open(log_path, "wb")
        child = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True)
        self.children.append(child)
        return child

    def stop_all(self):
        for child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        self.children.clear()


class Prometheus:
    def __init__(self, url):
        self.url = url

    def api(self, path, **params):
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            body = http_get(f"{self.url}/api/v1/{path}?{query}", timeout=30)
        except urllib.error.HTTPError as e:  # 400 for a query that does not parse
            body = e.read()
        return json.loads(body)


def grafana_expr(expr):
    """The expression as Grafana sends it: the `instance` variable on "All", its rate interval."""
    return expr.replace('"$instance"', '".*"').replace("$__rate_interval", RATE_INTERVAL)


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


# ----- the load -----

def failing_and_passing_requests(endpoint, stop, counts):
    """boto3 requests until `stop`: some that succeed, some that fail with AWS error codes."""
    import boto3
    import botocore.config
    import botocore.exceptions

    cfg = botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10)
    kms = boto3.client("kms", endpoint_url=endpoint, config=cfg)
    made = {}
    for spec, usage in [("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"), ("RSA_2048", "ENCRYPT_DECRYPT"),
                        ("ECC_NIST_P256", "SIGN_VERIFY"), ("HMAC_256", "GENERATE_VERIFY_MAC")]:
        made[spec] = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
    disabled = kms.create_key(Description="disabled")["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=disabled)
    doomed = kms.create_key(Description="pending deletion")["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    wrong = boto3.client("kms", endpoint_url=endpoint, config=cfg,
                         aws_access_key_id="AKIAEXAMPLEEXAMPLE00", aws_secret_access_key="wrong")
    garbled = base64.b64decode(base64.b64encode(b"\x01" + os.urandom(80)))
    calls = [
        lambda: kms.describe_key(KeyId=made["SYMMETRIC_DEFAULT"]),
        lambda: kms.list_keys(Limit=10),
        lambda: kms.sign(KeyId=made["ECC_NIST_P256"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256"),
        lambda: kms.generate_mac(KeyId=made["HMAC_256"], Message=b"m", MacAlgorithm="HMAC_SHA_256"),
        lambda: kms.decrypt(CiphertextBlob=garbled),                                # InvalidCiphertextException
        lambda: kms.describe_key(KeyId="11111111-2222-3333-4444-555555555555"),   # NotFoundException
        lambda: kms.encrypt(KeyId=disabled, Plaintext=b"x"),                        # DisabledException
        lambda: kms.encrypt(KeyId=doomed, Plaintext=b"x"),                          # KMSInvalidStateException
        lambda: wrong.list_keys(),                                                  # refused signature
    ]
    i = 0
    while not stop.is_set():
        try:
            calls[i % len(calls)]()
            counts["ok"] += 1
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "?")
            counts[code] = counts.get(code, 0) + 1
        except botocore.exceptions.BotoCoreError as e:
            counts["transport"] = counts.get("transport", 0) + 1
            print(f"dashboard-picture: boto3: {e}", file=sys.stderr)
        i += 1
        time.sleep(0.05)


def drive_load(ekms, endpoint, env, minutes, tmp):
    stop = threading.Event()
    counts = {"ok": 0}
    thread = threading.Thread(target=failing_and_passing_requests, args=(endpoint, stop, counts))
    thread.start()
    deadline = time.monotonic() + minutes * 60
    try:
        round_no = 0
        while time.monotonic() < deadline:
            for op, seconds, connections in BENCH_OPS:
                left = deadline - time.monotonic()
                if left < 3:
                    break
                seconds = max(1, min(seconds, int(left) - 1))
                out = subprocess.run(
                    [ekms, "bench", "--endpoint", endpoint, "--op", op, "--duration", str(seconds),
                     "--connections", str(connections), "--json"],
                    env=env, capture_output=True, text=True, timeout=seconds + 120)
                line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:]
                print(f"dashboard-picture: bench {op} {seconds}s: {line}", flush=True)
                # A pause between runs, so the panels show the load change.
                time.sleep(4 if round_no % 2 else 8)
            round_no += 1
    finally:
        stop.set()
        thread.join()
    print(f"dashboard-picture: boto3 requests by outcome: {counts}", flush=True)


# ----- the checks -----

def expressions(dashboard):
    """(panel title, legend, expression) of every target, in the dashboard's order."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target.get("legendFormat", ""), target["expr"]


def check(prom, dashboard, start, end, step):
    failures = []
    variable = [v for v in dashboard.get("templating", {}).get("list", []) if v["name"] == "instance"]
    for v in variable:
        # label_values(METRIC, LABEL), as Grafana asks it.
        metric = v["query"]["query"].split("(", 1)[1].split(",")[0].strip()
        answer = prom.api("label/instance/values", **{"match[]": metric})
        values = answer.get("data") or []
        ok = answer.get("status") == "success" and values
        print(f"{'ok  ' if ok else 'FAIL'} variable instance: {v['query']['query']} -> {values}")
        if not ok:
            failures.append(f"variable instance: {answer}")
    for panel, legend, expr in expressions(dashboard):
        sent = grafana_expr(expr)
        instant = prom.api("query", query=sent, time=end)
        ranged = prom.api("query_range", query=sent, start=start, end=end, step=step)
        problems = []
        for name, answer in (("instant", instant), ("range", ranged)):
            if answer.get("status") != "success":
                problems.append(f"{name}: {answer.get('errorType')}: {answer.get('error')}")
            elif not answer["data"]["result"]:
                problems.append(f"{name}: no series")
        series = len(ranged.get("data", {}).get("result", [])) if ranged.get("status") == "success" else 0
        print(f"{'FAIL' if problems else 'ok  '} [{panel['title']}] {legend or '-'}: {series} series"
              + (f"  <- {'; '.join(problems)}" if problems else ""))
        if problems:
            failures.append(f"[{panel['title']}] {expr}: {'; '.join(problems)}")
    return failures


# ----- the picture -----

def legend_of(fmt, labels):
    out = fmt or "{{__name__}}"
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out.strip() or "value"


def human(value, unit):
    if value is None:
        return "-"
    if unit == "bool_yes_no":
        return "Yes" if value >= 0.5 else "No"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit in ("bytes", "Bps"):
        for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(value) < 1024 or suffix == "TiB":
                return f"{value:.3g} {suffix}" + ("/s" if unit == "Bps" else "")
            value /= 1024
    if unit == "s":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
    suffix = " req/s" if unit == "reqps" else ""
    if abs(value) >= 1e9:
        return f"{value:.4g}"[:12] + suffix
    if abs(value) >= 1000:
        return f"{value:,.0f}{suffix}"
    return f"{value:.3g}{suffix}"


def render(prom, dashboard, start, end, step, out_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    from datetime import datetime

    bg, panel_bg, fg, grid = "#111217", "#181b1f", "#ccccdc", "#2c3235"
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(16, rows * 0.46), dpi=72, facecolor=bg)
    spec = fig.add_gridspec(rows, 24, left=0.045, right=0.96, top=0.955, bottom=0.01,
                            wspace=1.6, hspace=2.2)
    fig.suptitle(f"{dashboard.get('title', 'ekms')}: the dashboard's panels, rendered from a real "
                 f"run's Prometheus data (ekms dev, mock enclave, {(end - start) / 60:.0f} min)",
                 color=fg, fontsize=13, x=0.01, y=0.99, ha="left")
    for panel in panels:
        g = panel["gridPos"]
        # Timeseries: the graph on top, its legend below it, as Grafana lays them out.
        bottom = g["y"] + g["h"] - (1 if panel["type"] == "stat" else 3)
        ax = fig.add_subplot(spec[g["y"]:bottom, g["x"]:g["x"] + g["w"]])
        ax.set_facecolor(panel_bg)
        for side in ax.spines.values():
            side.set_color(grid)
        ax.set_title(panel["title"], color=fg, fontsize=10, loc="left")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        if panel["type"] == "stat":
            values = []
            for target in panel.get("targets", []):
                answer = prom.api("query", query=grafana_expr(target["expr"]), time=end)
                for r in answer.get("data", {}).get("result", []):
                    values.append(float(r["value"][1]))
            text = human(values[-1] if values else None, unit)
            good = {"Enclave up": "Yes", "Store reachable": "Yes", "Sealed / recovering": "No"}.get(panel["title"])
            colour = "#73bf69" if good in (None, text) else "#f2495c"
            ax.text(0.5, 0.42, text, color=colour, fontsize=22 if len(text) < 10 else 15,
                    ha="center", va="center",
                    transform=ax.transAxes, fontweight="bold")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        lines = 0
        right = None
        overrides = panel.get("fieldConfig", {}).get("overrides", [])
        for target in panel.get("targets", []):
            answer = prom.api("query_range", query=grafana_expr(target["expr"]), start=start,
                              end=end, step=step)
            for r in answer.get("data", {}).get("result", []):
                xs = [datetime.fromtimestamp(float(t)) for t, _ in r["values"]]
                ys = [float(v) if v not in ("NaN", "+Inf", "-Inf") else float("nan")
                      for _, v in r["values"]]
                label = legend_of(target.get("legendFormat"), r["metric"])
                on = ax
                # An override by name that moves a series to the right axis, with its own unit.
                for o in overrides:
                    props = {q["id"]: q["value"] for q in o.get("properties", [])}
                    if o.get("matcher", {}).get("options") == label and \
                            props.get("custom.axisPlacement") == "right":
                        right = right or ax.twinx()
                        on = right
                        right.tick_params(colors=fg, labelsize=7)
                        right.yaxis.set_major_formatter(FuncFormatter(
                            lambda v, _pos, u=props.get("unit", unit): human(v, u)))
                on.plot(xs, ys, linewidth=1.2, label=label, color=f"C{lines % 10}")
                lines += 1
        ax.tick_params(colors=fg, labelsize=7)
        ax.grid(color=grid, linewidth=0.6)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos, u=unit: human(v, u)))
        for a in (ax, right):
            if a:
                a.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(mdates.MinuteLocator())
        handles = [h for a in (ax, right) if a for h in a.get_legend_handles_labels()[0]]
        if handles:
            # As many columns as the panel's width holds (about 4 px a character at 6.5 pt).
            longest = max(len(h.get_label()) for h in handles)
            ncol = max(1, min(6, int(g["w"] * 44 / (longest * 4 + 30))))
            ax.legend(handles=handles, fontsize=6.5, loc="upper left", bbox_to_anchor=(0.0, -0.12),
                      frameon=False, labelcolor=fg, ncol=ncol, columnspacing=1.2, handlelength=1.5)
    fig.savefig(out_path, facecolor=bg)
    plt.close(fig)


# ----- main -----

def check_and_render(prom, start, end, args):
    step = max(SCRAPE_SECONDS, int((end - start) / 200))
    dashboard = load_dashboard()
    failures = check(prom, dashboard, start, end, step)
    if not args.check_only:
        render(prom, dashboard, start, end, step, args.out)
        print(f"dashboard-picture: wrote {args.out} ({os.path.getsize(args.out) // 1024} KiB)")
    if failures:
        print("dashboard-picture: expressions that failed:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


def from_run(args):
    """A Prometheus of its own on a kept run's data (read only in effect: nothing scrapes)."""
    with open(os.path.join(args.from_run, "run.json")) as f:
        run = json.load(f)
    port = free_port()
    config = os.path.join(args.from_run, "prometheus-replay.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 5s\nscrape_configs: []\n")
    procs = Processes()
    try:
        procs.start([args.prometheus, f"--config.file={config}",
                     f"--storage.tsdb.path={args.from_run}/prometheus",
                     f"--web.listen-address=127.0.0.1:{port}"],
                    os.path.join(args.from_run, "prometheus-replay.log"))
        prom = Prometheus(f"http://127.0.0.1:{port}")
        wait_for("prometheus", lambda: http_get(f"{prom.url}/-/ready") is not None)
        return check_and_render(prom, run["start"], run["end"], args)
    finally:
        procs.stop_all()

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ekms", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                                   "release", "ekms"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "dashboard.png"))
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--from-run", metavar="DIR",
                    help="no new run: check and render again from a kept run's Prometheus data")
    args = ap.parse_args()
    if args.from_run:
        return from_run(args)
    for exe in (args.ekms, args.prometheus):
        if not shutil.which(exe):
            sys.exit(f"dashboard-picture: {exe} not found (see the usage above)")

    tmp = tempfile.mkdtemp(prefix="ekms-dashboard-")
    procs = Processes()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        api_port, metrics_port, prom_port = free_port(), free_port(), free_port()
        endpoint = f"http://127.0.0.1:{api_port}"
        data = os.path.join(tmp, "ekms")
        procs.start([args.ekms, "dev", "--data-dir", data, "--listen", f"127.0.0.1:{api_port}",
                     "--metrics-listen", f"127.0.0.1:{metrics_port}"], os.path.join(tmp, "ekms-dev.log"))
        wait_for("ekms dev", lambda: os.path.exists(os.path.join(data, "credentials"))
                 and http_get(f"http://127.0.0.1:{metrics_port}/readyz") is not None, timeout=120)
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write(f"global:\n  scrape_interval: {SCRAPE_SECONDS}s\n  evaluation_interval: {SCRAPE_SECONDS}s\n"
                    f"scrape_configs:\n  - job_name: ekms\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{metrics_port}']\n")
        procs.start([args.prometheus, f"--config.file={tmp}/prometheus.yml",
                     f"--storage.tsdb.path={tmp}/prometheus", f"--web.listen-address=127.0.0.1:{prom_port}"],
                    os.path.join(tmp, "prometheus.log"))
        prom = Prometheus(f"http://127.0.0.1:{prom_port}")
        wait_for("prometheus", lambda: http_get(f"{prom.url}/-/ready") is not None)
        env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=os.path.join(data, "credentials"),
                   AWS_PROFILE="ekms", AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL_KMS=endpoint)
        os.environ.update({k: env[k] for k in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE",
                                                "AWS_DEFAULT_REGION")})
        start = time.time()
        drive_load(args.ekms, endpoint, env, args.minutes, tmp)
        # Two more scrapes and one more report from the enclave (every 5 s).
        time.sleep(2 * SCRAPE_SECONDS + 1)
        end = time.time()
        with open(os.path.join(tmp, "run.json"), "w") as f:
            json.dump({"start": start, "end": end}, f)
        return check_and_render(prom, start, end, args)
    finally:
        procs.stop_all()
        if args.keep:
            print(f"dashboard-picture: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
