#!/bin/sh
# Counts the starts of this instance in /state.dat, then prints a greeting every 10 s; says
# which start it ends when asked to stop (SIGTERM), and exits at once.
n=$(cat /state.dat 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > /state.dat
echo "${GREETING:-hello} from $AOS_ITEM_ID (start $n)"
trap 'echo "stopping (start $n)"; exit 0' TERM
while :; do
	sleep 10 &
	wait $!
	echo "${GREETING:-hello} again"
done
