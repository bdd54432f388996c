#!/usr/bin/env bash
# t_notify: notify_command runs after wal-prune and basebackup verify with one JSON document on
# stdin (parsed by python3's json module: event, cluster, status, error, host, time; no secret);
# a notifier slower than notify_timeout is killed with its process group and the command still
# exits 0; a failing notifier is one WARNING and changes no exit status (0 stays 0, 1 stays 1).
. "$(dirname "$0")/lib.sh"
setup_tmp

KEY=$T/walsafe.key
CONF=$T/walsafe.conf
make_key "$KEY"
make_repo "$T/repo"
# (wal-prune runs as root here, with --allow-root: the notifier writes into $T, which is root's)
WAL_PRUNE=$BIN_DIR/wal-prune
BASEBACKUP=$BIN_DIR/basebackup

# conf NOTIFY_COMMAND [LINE...]: the configuration with this notify_command.
conf() {
    local cmd=$1
    shift
    write_conf "$CONF" "repo = '$T/repo'" "encrypt_key_file = '$KEY'" "retain_full = 1" \
        "notify_command = '$cmd'" "$@"
}

# doc_field NAME: a field of the recorded document, as python prints it ("None" for null).
doc_field() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/doc.json" "$1"
}

CASE="document after wal-prune"
conf "cat > $T/doc.json"
run "$WAL_PRUNE" --config "$CONF" --allow-root
assert_rc 0 "wal-prune with a notifier"
python3 -m json.tool "$T/doc.json" >/dev/null || fail "the document is not JSON: $(cat "$T/doc.json")"
assert_eq "$(doc_field event)" "wal-prune" "event"
assert_eq "$(doc_field cluster)" "main" "cluster"
assert_eq "$(doc_field status)" "success" "status"
assert_eq "$(doc_field error)" "None" "error"
assert_eq "$(doc_field host)" "$(hostname)" "host"
[[ "$(doc_field time)" =~ ^20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z$ ]] ||
    fail "time is not a UTC time stamp: $(doc_field time)"
check_no_secrets "$T/doc.json"
grep -q -F "$KEY" "$T/doc.json" && fail "the document names the key file"

CASE="document after a failed verify"
rm -f "$T/doc.json"
run "$BASEBACKUP" --config "$CONF" verify
assert_rc 1 "verify of an empty repository"
assert_eq "$(doc_field event)" "basebackup verify" "event"
assert_eq "$(doc_field status)" "failure" "status"
assert_eq "$(doc_field error)" "$(sed -n 's/^basebackup: ERROR: //p' "$T/.last.err")" \
    "error is the command's error line"

CASE="document after logicalbackup verify"
rm -f "$T/doc.json"
run "$BIN_DIR/logicalbackup" --config "$CONF" verify
assert_rc 1 "logicalbackup verify of an empty repository"
assert_eq "$(doc_field event)" "logicalbackup verify" "event"
assert_eq "$(doc_field status)" "failure" "status"
assert_eq "$(doc_field error)" "$(sed -n 's/^logicalbackup: ERROR: //p' "$T/.last.err")" \
    "error is the command's error line"

CASE="slow notifier killed at notify_timeout"
# the notifier and its child sleep in the background of its shell: all of its process group goes
conf "sleep 300.7 & sleep 301.3; touch $T/late" "notify_timeout = 2s"
run "$WAL_PRUNE" --config "$CONF" --allow-root
assert_rc 0 "wal-prune with a slow notifier"
assert_err_contains "WARNING: notify_command did not finish within notify_timeout (2 s): killed it" \
    "the timeout is logged"
[ "$ELAPSED_MS" -lt 60000 ] || fail "wal-prune took ${ELAPSED_MS} ms: it waited for the notifier"
note "wal-prune returned after $ELAPSED_MS ms (notify_timeout 2 s)"
sleep 0.5
pgrep -f -x "sleep 30[01]\.[37]" >/dev/null && fail "the notifier's processes still run: $(pgrep -a -f -x 'sleep 30[01]\.[37]')"
assert_absent "$T/late" "the notifier went on after its timeout"

CASE="failing notifier"
conf "cat >/dev/null; echo notifier-speaks; exit 3"
run "$WAL_PRUNE" --config "$CONF" --allow-root
assert_rc 0 "wal-prune with a failing notifier"
assert_err_contains "WARNING: notify_command failed with exit status 3" "the failure is logged"
assert_err_contains "notifier-speaks" "the notifier's output goes to stderr"
[ -s "$T/.last.out" ] && grep -q notifier-speaks "$T/.last.out" && fail "the notifier's output reached stdout"
run "$BASEBACKUP" --config "$CONF" verify
assert_rc 1 "verify (failing) with a failing notifier"
assert_err_contains "WARNING: notify_command failed with exit status 3" "the failure is logged"

# The examples of scripts/notify: mail through a sendmail (here a stand-in that records the mail),
# a webhook posted with curl (here a node HTTP server on 127.0.0.1 that records the body).
EXAMPLES=$(cd "$(dirname "$0")/../../scripts/notify" && pwd)
CASE="example: mail"
printf '#!/bin/sh\n[ "$*" = "-t -i" ] || exit 9\ncat > %s/mail.txt\n' "$T" >"$T/sendmail"
chmod 755 "$T/sendmail"
conf "SENDMAIL=$T/sendmail $EXAMPLES/walsafe-notify-mail dba@example.com"
run "$BASEBACKUP" --config "$CONF" verify
assert_rc 1 "verify with the mail example"
assert_err_one_line "only the command's error, no warning from the mail example"
grep -q '^To: dba@example.com$' "$T/mail.txt" || fail "no To: line: $(cat "$T/mail.txt")"
grep -q "^Subject: walsafe $(hostname) basebackup verify: failure (cluster main)$" "$T/mail.txt" ||
    fail "no Subject: line naming host, event, status and cluster: $(cat "$T/mail.txt")"
tail -1 "$T/mail.txt" | python3 -m json.tool >/dev/null || fail "the mail does not end with the document"
rm -f "$T/mail.txt"
run "$WAL_PRUNE" --config "$CONF" --allow-root
assert_rc 0 "wal-prune with the mail example"
assert_absent "$T/mail.txt" "a success is mailed only with \"all\""

CASE="example: webhook"
HOOK_PORT=$(free_port)
bg_start "$T/hook.log" node -e '
    const fs = require("fs");
    require("http").createServer((req, res) => {
        let body = "";
        req.on("data", (c) => body += c);
        req.on("end", () => {
            fs.writeFileSync(process.argv[1], req.method + " " + req.url + " " +
                req.headers["content-type"] + "\n" + body);
            res.end("ok");
        });
    }).listen(Number(process.argv[2]), "127.0.0.1", () => console.log("listening"));' "$T/hook.txt" "$HOOK_PORT"
for _ in $(seq 1 50); do grep -q listening "$T/hook.log" && break; sleep 0.1; done
printf 'url = "http://127.0.0.1:%s/hook/secret-token"\n' "$HOOK_PORT" >"$T/webhook.curl"
chmod 600 "$T/webhook.curl"
conf "$EXAMPLES/walsafe-notify-webhook $T/webhook.curl"
run "$WAL_PRUNE" --config "$CONF" --allow-root
assert_rc 0 "wal-prune with the webhook example"
assert_err_empty "the webhook example succeeds"
assert_eq "$(head -1 "$T/hook.txt")" "POST /hook/secret-token application/json" "the request"
tail -n +2 "$T/hook.txt" | python3 -m json.tool >/dev/null || fail "the body is not the document: $(cat "$T/hook.txt")"

CASE="notifier that ignores stdin"
conf "true"
run "$WAL_PRUNE" --config "$CONF" --allow-root
assert_rc 0 "wal-prune with a notifier that reads nothing"
assert_err_empty "no warning for a notifier that succeeds"
finish
