#!/bin/sh
# Counts the starts of this instance in /state.dat, then prints a greeting every 10 s.
n=$(cat /state.dat 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > /state.dat
echo "${GREETING:-hello} from $AOS_ITEM_ID (start $n)"
while sleep 10; do echo "${GREETING:-hello} again"; done
