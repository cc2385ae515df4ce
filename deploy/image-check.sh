#!/usr/bin/env bash
# Run the image's whole story against a Docker engine: provision a token into named
# volumes, serve, wait for the health check, list the token's keys, authorize traffic
# from inside the container, take the token away and back, back the volumes up, stop.
#
#   image-check.sh IMAGE
#
# The steps are those of docs/OPERATIONS.md (sections 6.2, 8 and 10), with two changes
# for a machine without a bridge network: the container uses the host's network, so
# ports 7443 and 7444 must be free, and nothing is published with -p. Every
# volume and container is named after this run and removed at the end, whatever
# happened. Exit status: 0 every step passed, 1 a step failed (a line on stderr names the
# step and the command), 2 usage error. Nothing secret is printed: the PIN files stay in
# their volume and in a private temporary directory that is removed.

# errtrace: the ERR trap below fires in functions too.
set -eEuo pipefail

readonly PROGRAM="image-check"
# The image's health check starts after 30 s and probes every 30 s; two probes' worth.
readonly HEALTH_WAIT_SECONDS=90
# The gateway's own health monitor probes the token every second; a few rounds.
readonly TOKEN_WAIT_SECONDS=20
# Docker's default stop timeout (10 s) is shorter than a drain may take: health's
# NOT_SERVING notice (1 s) + the grace period (5 s) + the supervisor's margin (10 s).
readonly STOP_TIMEOUT_SECONDS=20
readonly KEYS='pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=setpay-bank;pin-source=file:/etc/setpay/token.pin'

(($# == 1)) || { echo "usage: image-check.sh IMAGE" >&2; exit 2; }
readonly image=$1
readonly run_id="setpay-check-$$"
readonly tokens="$run_id-tokens" etc="$run_id-etc" bank="$run_id-bank" gateway="$run_id-gateway"
so_pin_dir="" backup_dir="" step="setting up"

say() { echo "$PROGRAM: $*"; }
begin() { step=$1; say "$1"; }  # a numbered step: a failure names it
fail() { echo "$PROGRAM: FAILED: $*" >&2; exit 1; }

cleanup() {
    docker rm -f "$gateway" >/dev/null 2>&1 || true
    docker volume rm "$tokens" "$etc" "$bank" >/dev/null 2>&1 || true
    rm -rf -- ${so_pin_dir:+"$so_pin_dir"} ${backup_dir:+"$backup_dir"}
}
trap cleanup EXIT
# Any command that fails outside a test ends the run with status 1, saying where; the
# commands name no secret (the PINs stay in files), so printing one is safe.
on_error() { fail "$step: \`$2\` exited $1"; }
trap 'on_error "$?" "$BASH_COMMAND"' ERR

command -v docker >/dev/null || fail "docker is not installed"
so_pin_dir=$(mktemp -d)
backup_dir=$(mktemp -d)

in_volumes() {  # docker run --rm with the three volumes
    docker run --rm --network host -v "$tokens:/var/lib/softhsm/tokens" \
        -v "$etc:/etc/setpay" -v "$bank:/var/lib/setpay" "$@"
}

health() { docker inspect --format '{{.State.Health.Status}}' "$gateway"; }
healthy() { [[ "$(health)" == healthy ]]; }
# The gateway's own answer, asked inside the container on the CA port.
serving() {
    docker exec "$gateway" setpay health --target 127.0.0.1:7444 --ca /var/lib/setpay/tls/root.pem
}
not_serving() { ! serving; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
    local seconds=$1 what=$2
    shift 2
    local i
    for ((i = 0; i < seconds; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    fail "$what within $seconds s"
}

say "image $image"
for volume in "$tokens" "$etc" "$bank"; do docker volume create "$volume" >/dev/null; done
# The container's user (10001) writes the SO PIN file here, as section 6.2 says.
chown 10001:10001 "$so_pin_dir" && chmod 0700 "$so_pin_dir"

begin "1. provision a token and a bank on it (setpay-provision-token)"
in_volumes -v "$so_pin_dir:/run/setpay-so" --entrypoint setpay-provision-token "$image" \
    --label setpay-bank --pin-file /etc/setpay/token.pin \
    --so-pin-file /run/setpay-so/so.pin --bank /var/lib/setpay --profile ec
[[ "$(stat -c '%a %u' "$so_pin_dir/so.pin")" == "600 10001" ]] \
    || fail "the SO PIN file is not 0600 and the container user's"

begin "2. serve with the image's default command, PIN volume read-only"
docker run -d --name "$gateway" --network host --stop-timeout "$STOP_TIMEOUT_SECONDS" \
    -v "$tokens:/var/lib/softhsm/tokens" -v "$etc:/etc/setpay:ro" \
    -v "$bank:/var/lib/setpay" "$image" >/dev/null
wait_for "$HEALTH_WAIT_SECONDS" "the HEALTHCHECK did not report healthy" healthy
say "   health: $(health)"

begin "3. the bank's keys are on the token (docker exec setpay keys list)"
docker exec "$gateway" setpay keys list --keys "$KEYS" | tee "$backup_dir/keys.txt"
grep -q '^brand-root ' "$backup_dir/keys.txt" || fail "no brand-root key on the token"

begin "4. authorizations from inside the container (setpay bench authorize --target)"
# setpay init writes no merchant credential into a bank; the bench presents the one its
# tls/ holds, so one is issued there for the run and removed after it.
docker exec "$gateway" setpay ca issue-tls --config /var/lib/setpay/setpay.toml \
    --role client --name merchant-client --out /var/lib/setpay/tls >/dev/null
# The bench exits 3 when it doubts its figures (a loaded container sends late, the
# machine changes speed): a doubt about speed, not about what the bank did, which the
# report below is judged on. Any other status is a failure.
bench_status=0
docker exec "$gateway" setpay bench authorize --target 127.0.0.1:7443 \
    --bank-config /var/lib/setpay/setpay.toml \
    --rate 50 --duration 4 --cardholders 10 --json /tmp/bench.json >"$backup_dir/bench.txt" \
    || bench_status=$?
docker exec "$gateway" rm /var/lib/setpay/tls/merchant-client.pem \
    /var/lib/setpay/tls/merchant-client.key
sed -n '/^open loop/,$p' "$backup_dir/bench.txt"
case $bench_status in
    0 | 3) ;;
    *) fail "setpay bench authorize exited $bench_status" ;;
esac
docker exec "$gateway" python -c '
import json, sys
report = json.load(open("/tmp/bench.json"))
step = report["steps"][0]["results"]["gateway"]
for doubt in report["doubts"]:
    print("image-check: the bench doubts (not a failure here):", doubt)
approved = step["outcomes"].get("approved")
holds = step["ledger_holds"] or {}
sys.exit(0 if step["accounted"] and not step["unaccounted"] and step["bank_checked"]
         and step["sent"] == step["ok"] == approved == holds.get("holds_made") else 1)
' || fail "not every AuthReq was approved, accounted for and held in the ledger"

begin "5. the token goes away: NOT_SERVING; it comes back: SERVING, no restart"
started=$(docker inspect --format '{{.State.StartedAt}}' "$gateway")
docker exec "$gateway" sh -c 'mkdir /var/lib/softhsm/tokens/away && mv /var/lib/softhsm/tokens/[!a]* /var/lib/softhsm/tokens/away/'
wait_for "$TOKEN_WAIT_SECONDS" "health did not turn NOT_SERVING without the token" not_serving
serving || true
docker exec "$gateway" sh -c 'mv /var/lib/softhsm/tokens/away/* /var/lib/softhsm/tokens/ && rmdir /var/lib/softhsm/tokens/away'
wait_for "$TOKEN_WAIT_SECONDS" "health did not return to SERVING with the token back" serving
serving
[[ "$(docker inspect --format '{{.State.StartedAt}}' "$gateway")" == "$started" ]] \
    || fail "the container restarted"

begin "6. back up the volumes with the gateway stopped (section 10), start again"
docker stop "$gateway" >/dev/null
docker run --rm --user 0:0 --entrypoint tar \
    -v "$tokens:/var/lib/softhsm/tokens:ro" -v "$bank:/var/lib/setpay:ro" \
    -v "$backup_dir:/backup" "$image" \
    -czf /backup/setpay-state.tar.gz -C / var/lib/softhsm/tokens var/lib/setpay
# Listed to a file first: grep -q stopping early would fail tar with SIGPIPE (pipefail).
tar -tzf "$backup_dir/setpay-state.tar.gz" >"$backup_dir/listing.txt"
grep -q 'var/lib/setpay/ledger.db$' "$backup_dir/listing.txt" || fail "the backup holds no ledger"
grep -q 'var/lib/softhsm/tokens/.*/token.object$' "$backup_dir/listing.txt" \
    || fail "the backup holds no token"
if grep -q '\.pin$' "$backup_dir/listing.txt"; then fail "the backup holds a PIN file"; fi
# ledger.keys is sealed to the token's gateway-token key: no secret without the token and
# its PIN, which the archive must not hold (above). One in plaintext (a bank made before,
# never sealed with setpay bank seal-ledger-keys) would put the key to every PAN beside
# the PANs.
tar -xzf "$backup_dir/setpay-state.tar.gz" -C "$backup_dir" var/lib/setpay/ledger.keys
if grep -q '"data_key"' "$backup_dir/var/lib/setpay/ledger.keys" \
    || ! grep -q '"format": "setpay-ledger-keys/2"' "$backup_dir/var/lib/setpay/ledger.keys"; then
    fail "the backup holds the ledger keys in plaintext"
fi
docker start "$gateway" >/dev/null
wait_for "$TOKEN_WAIT_SECONDS" "the gateway did not serve again after the backup" serving

begin "7. SIGTERM: the gateway drains and exits 0"
docker stop "$gateway" >/dev/null
code=$(docker inspect --format '{{.State.ExitCode}}' "$gateway")
[[ "$code" == 0 ]] || fail "the gateway exited with $code"
say "every step passed"
