# shellcheck shell=sh
# Functions of the config job (infra/core/plan.py): install each node's rendered files
# from /stage into its volumes. POSIX sh (busybox in the local image, any shell in
# official ones). The job's script sets OWNER, DATA_NODES and SENTINELS first.
install_file() {  # SOURCE TARGET MODE: replace TARGET
  cp "$1" "$2.new" && chown "$OWNER" "$2.new" && chmod "$3" "$2.new" && mv -f "$2.new" "$2"
}
install_keeping_role() {  # SOURCE TARGET MODE: new settings, the role Redis recorded
  if [ -e "$2" ]; then
    grep -v -E '^(replicaof|slaveof) ' "$1" > "$2.new" || true
    grep -E '^(replicaof|slaveof) ' "$2" >> "$2.new" || true
  else
    cp "$1" "$2.new"
  fi
  chown "$OWNER" "$2.new" && chmod "$3" "$2.new" && mv -f "$2.new" "$2"
}
install_keeping_sentinel_state() {  # SOURCE TARGET MODE: new settings, Sentinel's state
  # Only state about this deployment's own nodes is kept: a master, replica or peer
  # at any other address can only come from a forged hello, and must not survive.
  if [ -e "$2" ]; then
    master=$(grep -E "^sentinel monitor [^ ]+ ($DATA_NODES) " "$2" | head -n 1 | cut -d ' ' -f 4,5)
    # The rendered first-start seeds give way to what Sentinel recorded (kept below);
    # grep exits 1 when it drops nothing, 2 when it cannot read: only that fails.
    grep -v -E '^sentinel (myid|known-replica|known-sentinel) ' "$1" > "$2.staged" || [ $? -eq 1 ]
    if [ -n "$master" ]; then
      sed -E "s/^(sentinel monitor [^ ]+) [^ ]+ [^ ]+ /\1 $master /" "$2.staged" > "$2.new"
    else
      cp "$2.staged" "$2.new"
    fi
    rm -f "$2.staged"
    grep -E '^sentinel (myid|config-epoch|leader-epoch|current-epoch) ' "$2" >> "$2.new" || true
    grep -E "^sentinel known-replica [^ ]+ ($DATA_NODES) " "$2" >> "$2.new" || true
    grep -E "^sentinel known-sentinel [^ ]+ ($SENTINELS) " "$2" >> "$2.new" || true
  elif [ "${RECORDED_SENTINELS:-no}" = yes ]; then
    # A new sentinel beside recorded ones: they keep the ids they recorded, which the
    # seeds cannot know, and a peer seeded under a wrong id would stay as a phantom
    # voter. It learns its peers from their hellos instead.
    grep -v -E '^sentinel known-sentinel ' "$1" > "$2.new" || [ $? -eq 1 ]
  else
    cp "$1" "$2.new"
  fi
  chown "$OWNER" "$2.new" && chmod "$3" "$2.new" && mv -f "$2.new" "$2"
}
note_recorded_sentinels() {  # SENTINEL_CONF...: RECORDED_SENTINELS=yes if one exists
  RECORDED_SENTINELS=no
  for file in "$@"; do
    if [ -e "$file" ]; then RECORDED_SENTINELS=yes; fi
  done
}
own_directory() {  # DIRECTORY MODE
  mkdir -p "$1" && chown "$OWNER" "$1" && chmod "$2" "$1"
}
mark_installed() {  # MARKER: the node's files are all in place (its command waits for it)
  : > "$1.new" && chown "$OWNER" "$1.new" && chmod 0400 "$1.new" && mv -f "$1.new" "$1"
}
