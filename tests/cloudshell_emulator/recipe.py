#!/usr/bin/env python3
"""The published reservation-mutex recipe (QualiSystemsLab/Reservation-Mutex-Lock),
with the official client: the lock is AddServiceToReservation(res,
'Mutex Service', 'MUTEX', []), release is RemoveServicesFromReservation.

usage: recipe.py PORT RESERVATION MODE [ALIAS]
  hold: take the alias (must succeed), print "HELD", wait for a line (or EOF)
        on stdin, remove it, print "RELEASED"
  try:  one attempt; print "ACQUIRED" (and keep it) or "ERROR <code> <message>"
Credentials: CS_USER / CS_PASSWORD (test values, not lockrun's variables).
"""

import os
import sys

from cloudshell.api.cloudshell_api import CloudShellAPISession
from cloudshell.api.common_cloudshell_api import CloudShellAPIError

port, reservation, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
alias = sys.argv[4] if len(sys.argv) > 4 else "MUTEX"
api = CloudShellAPISession(host="127.0.0.1", username=os.environ["CS_USER"],
                           password=os.environ["CS_PASSWORD"], domain="Global", port=port)
try:
    api.AddServiceToReservation(reservation, "Mutex Service", alias, [])
except CloudShellAPIError as e:
    print("ERROR %s %s" % (e.code, e.message), flush=True)
    sys.exit(1 if mode == "hold" else 0)
if mode == "try":
    print("ACQUIRED", flush=True)
    sys.exit(0)
print("HELD", flush=True)
sys.stdin.readline()
api.RemoveServicesFromReservation(reservation, [alias])
print("RELEASED", flush=True)
