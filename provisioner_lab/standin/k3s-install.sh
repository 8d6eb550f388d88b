#!/bin/sh
# k3s-install.sh -- install script for the lab's STAND-IN k3s.
#
# THIS IS A TEST DOUBLE. It is not the real k3s installer and it installs the stand-in
# k3s (provisioner/lab/standin/k3s), which is not real k3s either. It exists because the
# lab has no internet access. It offers the environment interface of the real script
# for the air-gap path only:
#
#   INSTALL_K3S_SKIP_DOWNLOAD=true   required: the binary must already be in the bin dir
#   INSTALL_K3S_VERSION              recorded; a warning when the binary reports another one
#   INSTALL_K3S_EXEC                 "server ..." / "agent ..." / flags (default: server,
#                                    or agent when K3S_URL is set); extra "$@" appended
#   INSTALL_K3S_BIN_DIR              default /usr/local/bin
#   INSTALL_K3S_SYSTEMD_DIR          default /etc/systemd/system
#   INSTALL_K3S_NAME                 unit name k3s-<name> instead of k3s / k3s-agent
#   INSTALL_K3S_SKIP_ENABLE=true     write files only (no enable, no start)
#   INSTALL_K3S_SKIP_START=true      enable but do not start
#   INSTALL_K3S_FORCE_RESTART=true   restart even when nothing changed (binary, unit and env
#                                    file hashed when the script starts and again at its end)
#   INSTALL_K3S_SYMLINK=skip|force   kubectl symlink handling
#   K3S_URL, K3S_TOKEN, K3S_TOKEN_FILE, K3S_NODE_NAME, any other K3S_*
#                                    written to <unit>.env (mode 0600), never to ExecStart
#
# Test hook: K3S_STANDIN_ROOT=/dir prefixes every path this script reads or writes.
set -eu

R="${K3S_STANDIN_ROOT:-}"
BIN_DIR="${INSTALL_K3S_BIN_DIR:-/usr/local/bin}"
SYSTEMD_DIR="${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}"
CONFIG_FILE="${K3S_CONFIG_FILE:-/etc/rancher/k3s/config.yaml}"
STATE_DIR=/var/lib/rancher/k3s/standin-install
K3S_BIN="$BIN_DIR/k3s"

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() {
    echo "[ERROR] $*" >&2
    exit 1
}

# write_file PATH MODE < content -- atomic: temp file in the same directory, then mv
write_file() {
    _dst="$R$1"
    _dir=$(dirname "$_dst")
    mkdir -p "$_dir"
    _tmp=$(mktemp "$_dir/.$(basename "$_dst").XXXXXX") || fatal "cannot create a temp file in $_dir"
    if ! cat >"$_tmp"; then
        rm -f "$_tmp"
        fatal "cannot write $_dst"
    fi
    chmod "$2" "$_tmp"
    mv -f "$_tmp" "$_dst"
}

file_hash() {
    if [ -f "$R$1" ]; then
        sha256sum "$R$1" | cut -d' ' -f1
    else
        echo none
    fi
}

# quote one argument for a systemd ExecStart line
sd_quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g" -e 's/%/%%/g' -e 's/\$/$$/g')"
}

config_has_token() {
    for _f in "$R$CONFIG_FILE" "$R$CONFIG_FILE".d/*.yaml "$R$CONFIG_FILE".d/*.yml; do
        [ -f "$_f" ] || continue
        if grep -Eq '^[[:space:]]*["'\'']?token(-file)?["'\'']?[[:space:]]*:[[:space:]]*[^[:space:]#]' "$_f"; then
            return 0
        fi
    done
    return 1
}

# --- preconditions -------------------------------------------------------------------
if [ -z "$R" ] && [ "$(id -u)" -ne 0 ]; then
    fatal "the stand-in k3s installer must run as root"
fi

# --- which command: server or agent ----------------------------------------------------
# INSTALL_K3S_EXEC is split into words on blanks; '...' and "..." group words (no other
# shell syntax is interpreted), then the script's own arguments are appended.
split_words() {
    printf '%s\n' "$1" | awk '
    BEGIN { q = ""; w = ""; have = 0 }
    {
        n = length($0)
        for (i = 1; i <= n; i++) {
            c = substr($0, i, 1)
            if (q != "") { if (c == q) q = ""; else w = w c; continue }
            if (c == "\047" || c == "\"") { q = c; have = 1; continue }
            if (c == " " || c == "\t") { if (have) print w; w = ""; have = 0; continue }
            w = w c; have = 1
        }
        if (q != "") w = w " "
        else { if (have) print w; w = ""; have = 0 }
    }
    END { if (have) print w }'
}
_exec_words=$(split_words "${INSTALL_K3S_EXEC:-}")
_old_ifs=$IFS
IFS='
'
set -f
# shellcheck disable=SC2086
set -- $_exec_words "$@"
set +f
IFS=$_old_ifs
if [ $# -gt 0 ] && { [ "$1" = server ] || [ "$1" = agent ]; }; then
    CMD_K3S=$1
    shift
elif [ -n "${K3S_URL:-}" ]; then
    CMD_K3S=agent
else
    CMD_K3S=server
fi

if [ -n "${K3S_URL:-}" ]; then
    case "$K3S_URL" in
    https://*) ;;
    *) fatal "K3S_URL must be an https:// URL, got '$K3S_URL'" ;;
    esac
    if [ -z "${K3S_TOKEN:-}" ] && [ -z "${K3S_TOKEN_FILE:-}" ] && ! config_has_token; then
        fatal "k3s exec command is '$CMD_K3S' and K3S_URL is set, but no token was given: set K3S_TOKEN or K3S_TOKEN_FILE, or put 'token:' in $CONFIG_FILE"
    fi
fi
if [ -n "${K3S_TOKEN_FILE:-}" ] && [ ! -f "$R$K3S_TOKEN_FILE" ]; then
    warn "K3S_TOKEN_FILE=$K3S_TOKEN_FILE does not exist (yet)"
fi
for _a in "$@"; do
    case "$_a" in
    --token | --token=* | -t | --agent-token | --agent-token=*)
        warn "a token passed on the command line ends up in the unit's ExecStart; prefer K3S_TOKEN or config.yaml"
        ;;
    esac
done

if [ -n "${INSTALL_K3S_NAME:-}" ]; then
    SYSTEM_NAME="k3s-${INSTALL_K3S_NAME}"
elif [ "$CMD_K3S" = server ]; then
    SYSTEM_NAME=k3s
else
    SYSTEM_NAME=k3s-agent
fi
SERVICE="$SYSTEM_NAME.service"
FILE_UNIT="$SYSTEMD_DIR/$SERVICE"
FILE_ENV="$SYSTEMD_DIR/$SERVICE.env"
KILLALL_SH="$BIN_DIR/k3s-killall.sh"
UNINSTALL_SH="$BIN_DIR/$SYSTEM_NAME-uninstall.sh"
STATE_FILE="$STATE_DIR/$SYSTEM_NAME.state"

# --- hashes of what is installed now, taken before anything is written -------------------
# As the real script does (k3s-io/k3s install.sh: setup_env sets PRE_INSTALL_HASHES from
# get_installed_hashes -- sha256 of the binary, the unit and the env file -- before it downloads;
# service_enable_and_start compares them with the hashes at the end). So a binary put in place
# *before* this script runs (the air-gap path) is not a change: only INSTALL_K3S_FORCE_RESTART=true
# restarts the service then.
installed_hashes() {
    echo "binary=$(file_hash "$K3S_BIN") unit=$(file_hash "$FILE_UNIT") env=$(file_hash "$FILE_ENV")"
}
PRE_INSTALL_HASHES=$(installed_hashes)

# --- the binary ---------------------------------------------------------------------
if [ "${INSTALL_K3S_SKIP_DOWNLOAD:-}" != true ]; then
    fatal "this is the lab's stand-in k3s installer: it cannot download k3s. Put the stand-in binary at $K3S_BIN and run again with INSTALL_K3S_SKIP_DOWNLOAD=true"
fi
[ -f "$R$K3S_BIN" ] || fatal "INSTALL_K3S_SKIP_DOWNLOAD=true but $K3S_BIN does not exist"
[ -x "$R$K3S_BIN" ] || fatal "$K3S_BIN is not executable (expected mode 0755)"
info "Skipping k3s download and verify (INSTALL_K3S_SKIP_DOWNLOAD=true)"
BIN_VERSION=$("$R$K3S_BIN" --version 2>/dev/null | sed -n '1s/^k3s version \([^ ]*\).*/\1/p') || true
if [ -z "$BIN_VERSION" ]; then
    warn "could not run '$K3S_BIN --version' (the stand-in needs /usr/bin/python3)"
elif [ -n "${INSTALL_K3S_VERSION:-}" ] && [ "$INSTALL_K3S_VERSION" != "$BIN_VERSION" ]; then
    warn "INSTALL_K3S_VERSION=$INSTALL_K3S_VERSION but $K3S_BIN reports $BIN_VERSION; installing the binary as it is"
fi

# --- kubectl symlink ------------------------------------------------------------------
# As the real script: only when no kubectl exists. /usr/bin/kubectl does not count: the
# stand-in delegates `kubectl` to it, on a real host it would not be there.
if [ "${INSTALL_K3S_SYMLINK:-}" = skip ]; then
    info "Skipping $BIN_DIR/kubectl symlink to k3s (INSTALL_K3S_SYMLINK=skip)"
elif [ -e "$R$BIN_DIR/kubectl" ] || [ -L "$R$BIN_DIR/kubectl" ]; then
    if [ "${INSTALL_K3S_SYMLINK:-}" = force ]; then
        info "Creating $BIN_DIR/kubectl symlink to k3s"
        ln -sf k3s "$R$BIN_DIR/kubectl"
    else
        info "Skipping $BIN_DIR/kubectl symlink to k3s, already exists"
    fi
else
    _which=$(command -v kubectl 2>/dev/null || true)
    if [ -n "$_which" ] && [ "$_which" != /usr/bin/kubectl ] && [ "$_which" != "$BIN_DIR/kubectl" ] &&
        [ "${INSTALL_K3S_SYMLINK:-}" != force ]; then
        info "Skipping $BIN_DIR/kubectl symlink to k3s, command exists in PATH at $_which"
    else
        info "Creating $BIN_DIR/kubectl symlink to k3s"
        ln -sf k3s "$R$BIN_DIR/kubectl"
    fi
fi

# --- killall script --------------------------------------------------------------------
info "Creating killall script $KILLALL_SH"
write_file "$KILLALL_SH" 0755 <<EOF
#!/bin/sh
# k3s-killall.sh -- written by the lab's STAND-IN k3s installer (test double, not real k3s).
# Stops the k3s units and any stand-in k3s process.
R='$R'
K3S_BIN='$K3S_BIN'
SYSTEMD_DIR='$SYSTEMD_DIR'
if [ -z "\$R" ] && [ "\$(id -u)" -ne 0 ]; then
    echo "k3s-killall.sh must run as root" >&2
    exit 1
fi
for unit in "\$R\$SYSTEMD_DIR"/k3s*.service; do
    [ -f "\$unit" ] || continue
    systemctl stop "\$(basename "\$unit")" 2>/dev/null || true
done
pids=""
for d in /proc/[0-9]*; do
    pid=\${d#/proc/}
    [ "\$pid" = "\$\$" ] && continue
    cmd=\$(tr '\\000' ' ' <"\$d/cmdline" 2>/dev/null) || continue
    case "\$cmd" in
    "\$R\$K3S_BIN "* | *"python3 \$R\$K3S_BIN "*) pids="\$pids \$pid" ;;
    esac
done
if [ -n "\$pids" ]; then
    # shellcheck disable=SC2086
    kill -TERM \$pids 2>/dev/null || true
    sleep 1
    # shellcheck disable=SC2086
    kill -KILL \$pids 2>/dev/null || true
fi
exit 0
EOF

# --- uninstall script ------------------------------------------------------------------
info "Creating uninstall script $UNINSTALL_SH"
write_file "$UNINSTALL_SH" 0755 <<EOF
#!/bin/sh
# $SYSTEM_NAME-uninstall.sh -- written by the lab's STAND-IN k3s installer (test double).
R='$R'
BIN_DIR='$BIN_DIR'
SYSTEMD_DIR='$SYSTEMD_DIR'
SYSTEM_NAME='$SYSTEM_NAME'
STATE_DIR='$STATE_DIR'
if [ -z "\$R" ] && [ "\$(id -u)" -ne 0 ]; then
    echo "\$0 must run as root" >&2
    exit 1
fi
if [ -x "\$R\$BIN_DIR/k3s-killall.sh" ]; then
    "\$R\$BIN_DIR/k3s-killall.sh"
fi
systemctl disable "\$SYSTEM_NAME.service" 2>/dev/null || true
systemctl reset-failed "\$SYSTEM_NAME.service" 2>/dev/null || true
rm -f "\$R\$SYSTEMD_DIR/\$SYSTEM_NAME.service" "\$R\$SYSTEMD_DIR/\$SYSTEM_NAME.service.env"
rm -f "\$R\$STATE_DIR/\$SYSTEM_NAME.state"
systemctl daemon-reload 2>/dev/null || true
rm -f "\$R\$BIN_DIR/\$SYSTEM_NAME-uninstall.sh"
for unit in "\$R\$SYSTEMD_DIR"/k3s*.service; do
    if [ -f "\$unit" ]; then
        echo "Other k3s units remain (\$(basename "\$unit")); keeping the shared files"
        exit 0
    fi
done
if [ -L "\$R\$BIN_DIR/kubectl" ] && [ "\$(readlink "\$R\$BIN_DIR/kubectl")" = k3s ]; then
    rm -f "\$R\$BIN_DIR/kubectl"
fi
rm -rf "\$R/etc/rancher/k3s" "\$R/etc/rancher/node" "\$R/var/lib/rancher/k3s" "\$R/run/k3s"
rmdir "\$R/etc/rancher" "\$R/var/lib/rancher" 2>/dev/null || true
rm -f "\$R\$BIN_DIR/k3s" "\$R\$BIN_DIR/k3s-killall.sh"
echo "stand-in k3s uninstalled"
EOF

# --- environment file: every K3S_* variable that is set ------------------------------
info "env: Creating environment file $FILE_ENV"
env | grep -E '^K3S_[A-Za-z0-9_]*=' | grep -v '^K3S_STANDIN_ROOT=' | LC_ALL=C sort |
    write_file "$FILE_ENV" 0600

# --- the unit ---------------------------------------------------------------------------
EXEC_LINES="    $CMD_K3S"
for _a in "$@"; do
    EXEC_LINES="$EXEC_LINES \\
    $(sd_quote "$_a")"
done
info "systemd: Creating service file $FILE_UNIT"
write_file "$FILE_UNIT" 0644 <<EOF
[Unit]
Description=Lightweight Kubernetes (lab stand-in k3s: a test double, not real k3s)
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-$FILE_ENV
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=$K3S_BIN \\
$EXEC_LINES
EOF

# --- enable and start --------------------------------------------------------------------
POST_INSTALL_HASHES=$(installed_hashes)

if [ "${INSTALL_K3S_SKIP_ENABLE:-}" = true ]; then
    info "Skipping enable and start of $SERVICE (INSTALL_K3S_SKIP_ENABLE=true)"
    exit 0
fi
command -v systemctl >/dev/null 2>&1 ||
    fatal "systemctl not found: the stand-in k3s installer supports systemd hosts only"
info "systemd: Enabling $SYSTEM_NAME unit"
systemctl daemon-reload
systemctl enable "$SERVICE" >/dev/null 2>&1 || systemctl enable "$SERVICE"
if [ "${INSTALL_K3S_SKIP_START:-}" = true ]; then
    info "Skipping start of $SERVICE (INSTALL_K3S_SKIP_START=true)"
    exit 0
fi
if [ "$POST_INSTALL_HASHES" = "$PRE_INSTALL_HASHES" ] && [ "${INSTALL_K3S_FORCE_RESTART:-}" != true ]; then
    info "No change detected so skipping service start"
    exit 0
fi
info "systemd: Starting $SYSTEM_NAME"
systemctl restart "$SERVICE"
write_file "$STATE_FILE" 0600 <<EOF
hashes=$POST_INSTALL_HASHES
service=$SERVICE
binary_version=${BIN_VERSION:-unknown}
requested_version=${INSTALL_K3S_VERSION:-}
EOF
