#!/usr/bin/env python3
"""A real Prometheus (Debian's prometheus package) scrapes the coordinator's /metrics over HTTPS
with a viewer bearer token, and a PromQL query through Prometheus's HTTP API returns the number
of completed rounds the admin API reports. The query's answer goes to RUNS_DIR (runs/ by
default). Exits 77 when prometheus is not installed.
usage: prometheus_scrape.py BUILD_DIR [RUNS_DIR]
"""
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fedtest import SKIP, Federation, check, free_port, wait_for  # noqa: E402


def query(port, promql):
    url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (port, urllib.parse.quote(promql))
    try:
        return json.load(urllib.request.urlopen(url, timeout=5))
    except OSError:
        return None


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        return 2
    prometheus = shutil.which("prometheus")
    if not prometheus:
        print("SKIP: prometheus is not installed (apt-get install prometheus; scripts/setup-debian.sh does)")
        return SKIP
    runs = os.path.abspath(sys.argv[2] if len(sys.argv) == 3 else "runs")
    os.makedirs(runs, exist_ok=True)
    fed = Federation(sys.argv[1], "admin-prometheus")
    prom = None
    try:
        completed = fed.paused_after(3)

        with open(fed.path("prometheus-token"), "w") as f:
            f.write(fed.viewer_token)
        port = free_port()
        with open(fed.path("prometheus.yml"), "w") as f:
            f.write("""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: federa
    scheme: https
    tls_config:
      ca_file: %s
    authorization:
      type: Bearer
      credentials_file: %s
    static_configs:
      - targets: ['127.0.0.1:%d']
""" % (fed.path("pki", "ca.pem"), fed.path("prometheus-token"), fed.admin_port))
        prom = subprocess.Popen([prometheus, "--config.file=" + fed.path("prometheus.yml"),
                                 "--storage.tsdb.path=" + fed.path("tsdb"), "--web.listen-address=127.0.0.1:%d" % port],
                                stdout=subprocess.DEVNULL, stderr=open(fed.path("prometheus.log"), "w"))

        def rounds():
            r = query(port, "federa_rounds_completed")
            if not r or r.get("status") != "success" or not r["data"]["result"]:
                return None
            return r
        answer = wait_for(rounds, 60, step=0.5)
        check(answer, "Prometheus never scraped the coordinator:\n" + fed.tail("prometheus.log"))
        value = int(float(answer["data"]["result"][0]["value"][1]))
        check(value == completed, "PromQL says %d completed rounds, the admin API %d" % (value, completed))
        up = query(port, 'up{job="federa"}')
        check(up["data"]["result"][0]["value"][1] == "1", "target not up: %s" % up)
        with open(os.path.join(runs, "admin-prometheus-query.json"), "w") as f:
            json.dump({"query": "federa_rounds_completed", "answer": answer}, f, indent=2)
        print("PromQL federa_rounds_completed = %d (admin API: %d); answer in %s/admin-prometheus-query.json"
              % (value, completed, runs))
    finally:
        if prom and prom.poll() is None:
            prom.terminate()
            try:
                prom.wait(10)
            except subprocess.TimeoutExpired:
                prom.kill()
        fed.close()
    print("admin prometheus: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
