#!/bin/sh
# Start Alertmanager with secrets that never live in its configuration file.
#
#   entrypoint.sh <alertmanager command and flags...>
#   e.g. entrypoint.sh /bin/alertmanager --config.file=/tmp/alertmanager/alertmanager.yml
#
# 1. Secrets given as environment variables (docker-compose `environment:`, a Kubernetes
#    `env.valueFrom.secretKeyRef`) are written to files in $ALERTMANAGER_SECRETS_DIR, mode 0600,
#    and removed from the environment Alertmanager inherits. Secrets mounted as files there
#    (docker secrets, a Kubernetes Secret volume) need no variable at all.
# 2. The configuration template is copied to $ALERTMANAGER_CONFIG with every
#    ${file:/path} replaced by that file's content. Alertmanager reads *_file settings itself;
#    this is only for settings that have no *_file form in our version (Telegram's bot_token
#    before 0.26). Alertmanager never expands variables in its configuration by itself.
# 3. exec the command, so Alertmanager is PID 1's replacement and gets the signals.
#
# POSIX sh and awk only: runs in the busybox-based prom/alertmanager image and on Debian.
set -eu

secrets_dir=${ALERTMANAGER_SECRETS_DIR:-/etc/alertmanager/secrets}
template=${ALERTMANAGER_CONFIG_TEMPLATE:-/etc/alertmanager/alertmanager.yml}
# Holds resolved secrets: keep it on a tmpfs (compose `tmpfs:`, Kubernetes emptyDir Memory).
config=${ALERTMANAGER_CONFIG:-/tmp/alertmanager/alertmanager.yml}

fail() {
  echo "entrypoint: $*" >&2
  exit 1
}

[ $# -gt 0 ] || fail "usage: entrypoint.sh <alertmanager command and flags...>"
umask 077

# write_secret VARIABLE FILE_NAME: the variable's value, when set and not empty, to a file.
write_secret() {
  eval "value=\${$1:-}"
  if [ -n "$value" ]; then
    mkdir -p "$secrets_dir" || fail "cannot create $secrets_dir for \$$1"
    printf '%s' "$value" >"$secrets_dir/$2" || fail "cannot write \$$1 to $secrets_dir/$2"
  fi
  unset "$1"
}
write_secret TELEGRAM_BOT_TOKEN telegram_bot_token
write_secret SLACK_WEBHOOK_URL slack_webhook_url
write_secret SMTP_PASSWORD smtp_password
unset value

[ -r "$template" ] || fail "cannot read the configuration template $template"
mkdir -p "$(dirname "$config")"
# Literal substitution (index/substr, no regex), so no character of a secret is special.
# The placeholder sits in single quotes in the YAML: a value with a quote or a line break
# would change the document's structure, so it is refused.
awk '
  function die(message) {
    print "entrypoint: " FILENAME ":" FNR ": " message > "/dev/stderr"
    failed = 1
    exit 1
  }
  function slurp(path,    line, content, lines, status) {
    content = ""
    lines = 0
    while ((status = (getline line < path)) > 0) {
      content = content (lines++ ? "\n" : "") line
    }
    if (status < 0) die("cannot read " path)
    close(path)
    sub(/\n+$/, "", content)
    if (content == "") die(path " is empty")
    if (index(content, "\n") || index(content, "\047")) die(path " must be one line without quotes")
    return content
  }
  /^[[:space:]]*#/ { print; next }  # comments may mention the syntax
  {
    out = ""
    rest = $0
    while ((start = index(rest, "${file:")) > 0) {
      tail = substr(rest, start + 7)
      stop = index(tail, "}")
      if (stop == 0) die("unterminated ${file:...}")
      out = out substr(rest, 1, start - 1) slurp(substr(tail, 1, stop - 1))
      rest = substr(tail, stop + 1)
    }
    print out rest
  }
  END { if (failed) exit 1 }
' "$template" >"$config.tmp" || { rm -f "$config.tmp"; fail "cannot render $config"; }
mv "$config.tmp" "$config"

exec "$@"
