#!/usr/bin/env bash
# A real single-node SLURM on this machine, for testing profiles/slurm (see tests/test_slurm.py).
#
#   scripts/slurm_local.sh start    install slurm-wlm if missing (needs root), write slurm.conf and
#                                   gres.conf (one fake GPU) for this host, start slurmctld and slurmd,
#                                   wait until the node is idle
#   scripts/slurm_local.sh status   print the node's state
#   scripts/slurm_local.sh stop     stop the daemons this script started (their pid files), nothing else
#
# The config goes where every SLURM client looks, /etc/slurm/{slurm.conf,gres.conf} (a job's inner
# srun ignores SLURM_CONF: Snakemake's jobstep plugin drops every SLURM_* variable); it refuses to
# replace a config it did not write, and `stop` removes its own. Pid files, state, spool and logs
# live under $SLURM_LOCAL_DIR (default /tmp/hdl-slurm).
# The daemons run as root without munge (auth/none): a test cluster, never a shared one.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/hdl-slurm}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK="# written by scripts/slurm_local.sh"
HOST=$(hostname -s)

die() { echo "slurm_local: $*" >&2; exit 1; }

install_slurm() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && return
  [ "$(id -u)" = 0 ] || die "slurm-wlm is not installed; as root run: apt-get install -y slurm-wlm"
  echo "slurm_local: installing slurm-wlm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm >/dev/null
}

write_config() {
  local cpus mem_mb
  cpus=$(nproc)
  mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  local file
  for file in "$CONF" "$CONF_DIR/gres.conf"; do
    if [ -f "$file" ] && ! grep -qF "$MARK" "$file"; then
      die "$file exists and was not written by this script; this machine has its own SLURM, use that"
    fi
  done
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$CONF_DIR"
  cat >"$CONF" <<EOF
$MARK (for host $HOST); '$0 stop' removes it
ClusterName=hdl-local
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/none
CredType=cred/none
MpiDefault=none
GresTypes=gpu
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# finished jobs stay visible to squeue and scontrol this long (the executor's status checks rely on it)
MinJobAge=3600
NodeName=$HOST NodeHostname=$HOST NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
  # a fake GPU, so that jobs asking for --gpus=1 are scheduled (File= is required, or the node drains)
  printf '%s\nNodeName=%s Name=gpu File=/dev/null\n' "$MARK" "$HOST" >"$CONF_DIR/gres.conf"
}

# pid from a pid file, if that process is alive and is the daemon named
running_pid() {
  local daemon=$1 pidfile=$DIR/$1.pid pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$daemon" ] && echo "$pid"
}

node_state() { sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n1; }

start() {
  install_slurm
  if running_pid slurmctld >/dev/null || running_pid slurmd >/dev/null; then
    die "already running from $DIR; run '$0 stop' first"
  fi
  write_config
  # -c: start with a clean state, so no job or drained node of an earlier run comes back
  /usr/sbin/slurmctld -c -f "$CONF"
  /usr/sbin/slurmd -f "$CONF"
  local state waited=0
  until [ "$(node_state)" = idle ]; do
    state=$(node_state)
    case "$state" in
      drain* | down*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
    waited=$((waited + 1))
    if [ $waited -ge 60 ]; then
      echo "slurm_local: node $HOST not idle after 30 s (state '${state:-none}'); logs:" >&2
      tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
      stop
      exit 1
    fi
  done
  echo "slurm_local: node $HOST idle"
}

stop() {
  local daemon pid
  for daemon in slurmd slurmctld; do
    if pid=$(running_pid "$daemon"); then
      kill "$pid"
      for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      echo "slurm_local: stopped $daemon ($pid)"
    fi
    rm -f "$DIR/$daemon.pid"
  done
  for file in "$CONF" "$CONF_DIR/gres.conf"; do
    if [ -f "$file" ] && grep -qF "$MARK" "$file"; then rm -f "$file"; fi
  done
}

status() {
  running_pid slurmctld >/dev/null || { echo "slurm_local: not running ($DIR)"; exit 1; }
  sinfo -N -o "%N %t %c %m %G"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
