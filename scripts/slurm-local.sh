#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine (Debian/Ubuntu, root, no systemd needed), with
# accounting: submitit polls `sacct`, and without slurmdbd a job cancelled by a failed dependency is
# never seen to end. Used by CI (.ci/run) and by anyone who wants to try `launcher=slurm` locally.
#   sudo bash scripts/slurm-local.sh          # install if needed, start, wait until the node is idle
#   sudo bash scripts/slurm-local.sh status   # scontrol ping + sinfo
#   sudo bash scripts/slurm-local.sh stop     # stop the daemons (state stays in $STATE)
# Packages' own service scripts cannot run without systemd, so each daemon is started by hand.
set -euo pipefail

STATE=${SLURM_LOCAL_STATE:-/var/lib/solar-slurm}   # spool, state, logs, pid files
CLUSTER=solar
HOST=$(hostname -s)
DB_PASS=solar-local   # a throw-away password for a database bound to 127.0.0.1 only

log() { echo "slurm-local: $*"; }

install_packages() {
  local missing=()
  for bin in slurmctld slurmd sbatch munged slurmdbd mariadbd; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing Slurm, munge, slurmdbd, MariaDB (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null
}

write_configs() {
  mkdir -p /etc/slurm "$STATE"/{ctld,spool,log,run}
  # Advertise what slurmd measures, minus 5% for the daemons, so jobs never oversubscribe memory.
  local cpus mem
  cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=$((mem * 95 / 100))
  cat > /etc/slurm/slurm.conf <<EOF
# Written by scripts/slurm-local.sh: one node, accounting through slurmdbd.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# Finished jobs leave slurmctld's memory quickly; sacct (slurmdbd) keeps them.
MinJobAge=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
  cat > /etc/slurm/slurmdbd.conf <<EOF
# Written by scripts/slurm-local.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
EOF
  chmod 600 /etc/slurm/slurmdbd.conf   # slurmdbd refuses a readable file holding a password
}

wait_for() {  # wait_for <seconds> <description> <command...>
  local t=$1 what=$2; shift 2
  for _ in $(seq "$t"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  log "timed out waiting for $what"; return 1
}

start_munge() {
  pgrep -x munged >/dev/null && return
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  su -s /bin/sh munge -c /usr/sbin/munged
  wait_for 10 munged munge -n
}

start_database() {
  if ! pgrep -x mariadbd >/dev/null; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
    (setsid mariadbd --user=mysql --bind-address=127.0.0.1 >"$STATE/log/mariadb.log" 2>&1 &)
    wait_for 30 mariadb mariadb -e "SELECT 1"
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurm() {
  if ! pgrep -x slurmdbd >/dev/null; then
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
  fi
  sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  pgrep -x slurmctld >/dev/null || slurmctld -i
  wait_for 30 slurmctld scontrol ping
  pgrep -x slurmd >/dev/null || slurmd
  # A node left DOWN/DRAINED by an earlier unclean stop is returned to service.
  for _ in $(seq 30); do
    case "$(sinfo -h -n "$HOST" -o %T 2>/dev/null)" in
      idle|mixed|allocated) log "node $HOST is up ($(sinfo -h -n "$HOST" -o %T)); partition 'local'"; return 0 ;;
      down*|drain*|fail*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  log "node $HOST did not become idle; see $STATE/log/"; sinfo; return 1
}

stop_all() {
  for d in slurmd slurmctld slurmdbd; do pkill -x "$d" 2>/dev/null || true; done
  sleep 1
  pkill -x mariadbd 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  log "stopped"
}

case "${1:-start}" in
  start)
    [ "$(id -u)" -eq 0 ] || { echo "slurm-local: run as root (it installs packages and starts daemons)" >&2; exit 2; }
    install_packages
    write_configs
    start_munge
    start_database
    start_slurm ;;
  stop) stop_all ;;
  status) scontrol ping && sinfo ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
