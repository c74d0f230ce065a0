#!/bin/sh
# t5114-train-ranks-netns: two "hosts" that are network namespaces joined
# by a veth pair (10.77.N.1 and 10.77.N.2), one rank in each: mpirun runs
# in the first and starts the second's daemon through an rsh agent that
# enters the other namespace, and every byte between the ranks crosses
# the veth interface (OpenMPI told to use that subnet only).  The run
# trains on the same global batches as a run alone, and the interface's
# counters show at least the gradients of every step.  Skips without
# OpenMPI, or without root or `ip netns` (CI runs as root).
. "$srcdir/t/tap.sh"
. "$srcdir/t/ranks.sh"
command -v ip >/dev/null 2>&1 || skip_all "no ip (iproute2)"
[ "`id -u`" = 0 ] || skip_all "not root: cannot create network namespaces"
id=$$
nsa=pfa$id nsb=pfb$id
ip netns add "$nsa" 2>/dev/null || skip_all "ip netns add failed (no CAP_SYS_ADMIN here)"
cleanup() { ip netns del "$nsa" 2>/dev/null; ip netns del "$nsb" 2>/dev/null; }
trap 'cleanup; exit $tap_fail' EXIT
plan 6
tmp=`tap_tmp t5114`
b=$top_builddir
net=10.77.$((id % 250 + 1))
ip netns add "$nsb" &&
ip link add "va$id" type veth peer name "vb$id" &&
ip link set "va$id" netns "$nsa" && ip link set "vb$id" netns "$nsb" &&
ip netns exec "$nsa" ip addr add "$net.1/24" dev "va$id" &&
ip netns exec "$nsb" ip addr add "$net.2/24" dev "vb$id" &&
ip netns exec "$nsa" ip link set "va$id" up && ip netns exec "$nsb" ip link set "vb$id" up &&
ip netns exec "$nsa" ip link set lo up && ip netns exec "$nsb" ip link set lo up
ok $? "namespaces $nsa ($net.1) and $nsb ($net.2) joined by a veth pair"

# the rsh agent mpirun uses to start the daemon of host $net.2
cat >"$tmp/nsrsh" <<AGENT
#!/bin/sh
host=\$1
shift
case \$host in $net.2) ns=$nsb ;; *) ns=$nsa ;; esac
exec ip netns exec "\$ns" sh -c "\$*"
AGENT
chmod +x "$tmp/nsrsh"
printf '%s slots=1\n%s slots=1\n' "$net.1" "$net.2" >"$tmp/hosts"
syn_shards "$tmp/syn" 1000 1 3
ok $? "1000 synthetic samples in 3 shards"

args="--device cpu --model mlp:16-32-4 --batch 30 --lr 0.01 --seed 7 --shuffle 500 --epochs 2 --json --quiet"
timeout 120 "$b/pipe-train" $args --fingerprint "$tmp/alone.fp" "$tmp/syn-*.pfs" \
	>"$tmp/alone.json" 2>/dev/null
tx0=`ip netns exec "$nsa" cat "/sys/class/net/va$id/statistics/tx_bytes"`
ASAN_OPTIONS=$MPI_ASAN OMPI_MCA_btl_tcp_if_include=$net.0/24 OMPI_MCA_oob_tcp_if_include=$net.0/24 \
	timeout 120 ip netns exec "$nsa" mpirun --hostfile "$tmp/hosts" -np 2 \
	--mca plm_rsh_agent "$tmp/nsrsh" "$b/pipe-train" $args --fingerprint "$tmp/ns.fp" \
	"$tmp/syn-*.pfs" </dev/null >"$tmp/ns.json" 2>"$tmp/ns.log"
ok $? "2 ranks on 2 namespaces trained"
sed 's/^/#   /' "$tmp/ns.log" | head -20
cmp -s "$tmp/alone.fp" "$tmp/ns.fp"
ok $? "  the same global batches in the same order as alone"
like "`cat "$tmp/ns.json"`" '"world_size":2' "  world_size 2"
tx1=`ip netns exec "$nsa" cat "/sys/class/net/va$id/statistics/tx_bytes"`
# 68 steps of 676 gradients (+ rows, stop) as floats, one way at least
need=$((68 * 678 * 4))
test $((tx1 - tx0)) -ge $need
ok $? "  $((tx1 - tx0)) bytes left $net.1 over the veth (the gradients alone: $need)"
