#!/usr/bin/env bash
# Create a SoftHSM token for a setpay bank and, with --bank, make the bank's keys on it.
#
#   provision-token.sh --label LABEL --pin-file FILE --so-pin-file FILE
#                      [--module PATH] [--bank DIR [--profile ec|rsa] [--brand ID]]
#
# The token goes into the token directory of the SoftHSM configuration that SOFTHSM2_CONF
# names; the variable is required so that a token never lands in the system default by
# accident. Each PIN comes from a file that only its owner may read (the rule setpay's
# pin-source applies); a PIN file that does not exist yet is created with a random PIN.
# PINs reach pkcs11-tool through its env: PIN source: a command line is visible to every
# user in ps and /proc/PID/cmdline, a process's environment only to its owner.
#
# With --bank, `setpay init DIR --keys pkcs11:module=...;token=LABEL;pin-source=file:...`
# then generates every key of the bank on the new token; if that fails, the token made
# by this run is deleted again so that a retry starts clean.
#
# setpay is found on PATH, or at $SETPAY. Exit status: 0 done, 1 refused or failed,
# 2 usage error. Nothing secret is printed.

set -euo pipefail
# Byte semantics for lengths and patterns, whatever the caller's locale.
export LC_ALL=C

readonly PROGRAM="provision-token"
readonly DEFAULT_MODULE="/usr/lib/softhsm/libsofthsm2.so"
# 24 random bytes are 32 base64 characters: 192 bits, beyond guessing, and inside
# SoftHSM's PIN length range of 4 to 255 characters.
readonly PIN_RANDOM_BYTES=24
readonly PIN_MIN_LENGTH=4
readonly PIN_MAX_LENGTH=255
# PKCS#11 token labels are 32 bytes (CK_TOKEN_INFO.label); the character set keeps the
# label usable unescaped in a key URI and in pkcs11-tool's listing.
readonly LABEL_PATTERN='^[A-Za-z0-9._-]{1,32}$'
# Paths go into a key URI unescaped: ';', '?', '%' and spaces would change its meaning.
readonly URI_PATH_PATTERN='^/[A-Za-z0-9/._~-]*$'
# Making a token takes well under a second; a minute of waiting means a stuck run.
readonly LOCK_WAIT_SECONDS=60

usage() {
    cat >&2 <<'EOF'
usage: provision-token.sh --label LABEL --pin-file FILE --so-pin-file FILE
                          [--module PATH] [--bank DIR [--profile ec|rsa] [--brand ID]]
EOF
    exit 2
}

die() {
    echo "$PROGRAM: $*" >&2
    exit 1
}

label="" pin_file="" so_pin_file="" module="$DEFAULT_MODULE"
bank="" profile="ec" brand="setpay"
while (($#)); do
    case "$1" in
        --label | --pin-file | --so-pin-file | --module | --bank | --profile | --brand)
            (($# >= 2)) || usage
            case "$1" in
                --label) label=$2 ;;
                --pin-file) pin_file=$2 ;;
                --so-pin-file) so_pin_file=$2 ;;
                --module) module=$2 ;;
                --bank) bank=$2 ;;
                --profile) profile=$2 ;;
                --brand) brand=$2 ;;
            esac
            shift 2
            ;;
        -h | --help) usage ;;
        *)
            echo "$PROGRAM: unknown argument $1" >&2
            usage
            ;;
    esac
done
[[ -n $label && -n $pin_file && -n $so_pin_file ]] || usage
[[ $label =~ $LABEL_PATTERN ]] || die "token label must be 1 to 32 of A-Z a-z 0-9 . _ -"
[[ $profile == ec || $profile == rsa ]] || die "profile must be ec or rsa"

for tool in pkcs11-tool softhsm2-util flock base64 head stat; do
    command -v "$tool" >/dev/null || die "$tool is not installed (Debian: softhsm2, opensc)"
done
# With --bank, setpay must run before a token is made for it, not after.
readonly setpay=${SETPAY:-setpay}
if [[ -n $bank ]] && ! command -v "$setpay" >/dev/null; then
    die "cannot run setpay ($setpay): put it on PATH or name it with SETPAY"
fi
[[ -n ${SOFTHSM2_CONF:-} ]] || die "SOFTHSM2_CONF is not set: name the softhsm2.conf to use"
[[ -r $SOFTHSM2_CONF ]] || die "cannot read SOFTHSM2_CONF file $SOFTHSM2_CONF"
[[ -r $module ]] || die "no PKCS#11 module at $module"

# The token directory, as SoftHSM reads it: "directories.tokendir = PATH".
tokendir=$(sed -n 's/^[[:space:]]*directories\.tokendir[[:space:]]*=[[:space:]]*//p' \
    "$SOFTHSM2_CONF" | tail -n 1)
tokendir=${tokendir%"${tokendir##*[![:space:]]}"}
[[ -n $tokendir ]] || die "$SOFTHSM2_CONF sets no directories.tokendir"
[[ -d $tokendir && -w $tokendir ]] || die "token directory $tokendir is missing or not writable"
# setpay init refuses a bank directory that is not empty; find out before making a token.
if [[ -n $bank && -e $bank ]] && { [[ ! -d $bank ]] || [[ -n $(ls -A -- "$bank") ]]; }; then
    die "bank directory $bank exists and is not empty"
fi

# An absolute path for a file, without resolving a symbolic link in its last part
# (secret stores rotate files by swapping such links).
absolute() {
    local directory
    directory=$(cd -- "$(dirname -- "$1")" && pwd) || die "no directory for $1"
    printf '%s/%s\n' "${directory%/}" "$(basename -- "$1")"
}

pin_file=$(absolute "$pin_file")
so_pin_file=$(absolute "$so_pin_file")
[[ $pin_file != "$so_pin_file" ]] || die "the user PIN and the SO PIN need different files"
if [[ -n $bank ]]; then
    [[ $module =~ $URI_PATH_PATTERN ]] || die "module path $module cannot go into a key URI"
    [[ $pin_file =~ $URI_PATH_PATTERN ]] || die "PIN file path $pin_file cannot go into a key URI"
fi

# Create a PIN file with a random PIN, readable by its owner only; never replace a file.
create_pin_file() {
    (
        umask 077
        set -o noclobber
        head -c "$PIN_RANDOM_BYTES" /dev/urandom | base64 | tr '+/' '-_' >"$1"
    ) || die "cannot create PIN file $1"
    echo "$PROGRAM: created PIN file $1 (mode 0600) with a random PIN"
}

# Read a PIN file into the variable named $2, refusing a file others can read.
read_pin_file() {
    local file=$1 mode size value
    [[ -f $file ]] || die "PIN file $file is not a regular file"
    mode=$(stat -L -c %a -- "$file")
    if (((8#$mode & 8#077) != 0)); then
        die "PIN file $file is accessible to group or others (mode $mode): chmod 600 it"
    fi
    size=$(stat -L -c %s -- "$file")
    IFS= read -r value <"$file" || [[ -n $value ]] || die "PIN file $file is empty"
    # The PIN and at most one line end, LF or CRLF, as setpay's pin-source reads it: a CR
    # kept here would be in the token's PIN and not in the one setpay offers.
    ((size == ${#value} || size == ${#value} + 1)) ||
        die "PIN file $file must hold one line: the PIN"
    if ((size == ${#value} + 1)); then
        value=${value%$'\r'}
    fi
    # Any other CR setpay refuses to offer (a line break in a PIN is a file saved wrong).
    [[ $value != *$'\r'* ]] ||
        die "the PIN in $file holds a carriage return (one line, ended by LF, CRLF or nothing)"
    ((${#value} >= PIN_MIN_LENGTH && ${#value} <= PIN_MAX_LENGTH)) ||
        die "the PIN in $file must be $PIN_MIN_LENGTH to $PIN_MAX_LENGTH characters"
    printf -v "$2" '%s' "$value"
}

# pkcs11-tool never reads a terminal here: a missing PIN must fail, not wait for input.
p11() {
    pkcs11-tool --module "$module" "$@" </dev/null
}

# The slot listing, one line per slot: "ID STATE LABEL SERIAL" (STATE ready or free).
slots() {
    p11 --list-slots | awk '
        function emit() { if (id != "") print id, state, label, serial }
        /^Slot / { emit(); id = $3; gsub(/[():]/, "", id); state = "ready"; label = "-"; serial = "-" }
        /token state: *uninitialized/ { state = "free" }
        $1 == "token" && $2 == "label" { sub(/^[^:]*: /, ""); label = $0 }
        $1 == "serial" && $2 == "num" { sub(/^[^:]*: /, ""); serial = $0 }
        END { emit() }'
}

# One provisioning at a time per token directory: two runs would race for the one free
# slot SoftHSM offers. flock works on a directory opened read-only.
exec 9<"$tokendir"
flock -w "$LOCK_WAIT_SECONDS" 9 || die "another provisioning holds $tokendir"

listing=$(slots) || die "pkcs11-tool cannot list the slots of $module"
if awk -v want="$label" '$2 == "ready" && $3 == want { found = 1 } END { exit !found }' \
    <<<"$listing"; then
    die "a token labelled $label already exists: setpay finds tokens by label"
fi
free_slot=$(awk '$2 == "free" { print $1; exit }' <<<"$listing")
[[ -n $free_slot ]] || die "SoftHSM offers no free slot"

[[ -e $so_pin_file ]] || create_pin_file "$so_pin_file"
[[ -e $pin_file ]] || create_pin_file "$pin_file"
so_pin="" user_pin=""
read_pin_file "$so_pin_file" so_pin
read_pin_file "$pin_file" user_pin

SETPAY_SO_PIN="$so_pin" p11 --slot "$free_slot" --init-token --label "$label" \
    --so-pin env:SETPAY_SO_PIN >/dev/null || die "pkcs11-tool could not initialize the token"
if ! SETPAY_SO_PIN="$so_pin" SETPAY_USER_PIN="$user_pin" p11 --token-label "$label" \
    --login --login-type so --so-pin env:SETPAY_SO_PIN --init-pin --pin env:SETPAY_USER_PIN \
    >/dev/null; then
    # A token without a user PIN is of no use to setpay: do not leave it behind.
    softhsm2-util --delete-token --token "$label" >/dev/null || true
    die "pkcs11-tool could not set the user PIN of token $label (token deleted again)"
fi
unset so_pin user_pin
serial=$(slots | awk -v want="$label" '$2 == "ready" && $3 == want { print $4; exit }')
[[ -n $serial ]] || die "token $label was initialized but is not listed"
echo "$PROGRAM: token $label (serial $serial) created in $tokendir"
exec 9<&-

[[ -n $bank ]] || exit 0

keys="pkcs11:module=$module;token=$label;pin-source=file:$pin_file"
if ! "$setpay" init "$bank" --profile "$profile" --brand "$brand" --keys "$keys"; then
    # The keys made so far are useless without their bank directory, and setpay init
    # refuses a token that already holds any of them: start the next try from nothing.
    softhsm2-util --delete-token --serial "$serial" >/dev/null ||
        die "setpay init failed; delete token $label (serial $serial) before retrying"
    die "setpay init failed; token $label deleted again (remove what it wrote in $bank)"
fi
