"""Driver-level check of prepared statements in transaction mode, run by test_psycopg.c.

psycopg 3 prepares a query server-side (named statements "_pg3_N") once it has run it
prepare_threshold times, and DEALLOCATEs the oldest when it holds more than prepared_max.
Twelve threads share a pgturbo pool of 2 server connections, so every statement runs on
whichever connection is free. Usage: psycopg_prepared.py PORT. Prints "ok N" on success.
"""
import sys
import threading

import psycopg

PORT = int(sys.argv[1])
THREADS = 12
ROUNDS = 40
errors = []
done = []


def worker(n):
    try:
        with psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname="postgres",
                             autocommit=True, prepare_threshold=0) as conn:
            conn.prepared_max = 3  # forces DEALLOCATE of evicted statements
            for i in range(ROUNDS):
                for k in range(5):
                    row = conn.execute(f"SELECT %s::int + {k}, %s::text", (i, f"t{n}")).fetchone()
                    if row != (i + k, f"t{n}"):
                        raise AssertionError(f"thread {n}: got {row}")
                with conn.transaction():
                    row = conn.execute("SELECT count(*) FROM generate_series(1, %s)", (i + 1,)).fetchone()
                    if row != (i + 1,):
                        raise AssertionError(f"thread {n}: count {row}")
            done.append(n)
    except Exception as e:  # reported to the C test through the exit status
        errors.append(f"thread {n}: {type(e).__name__}: {e}")


threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"ok {len(done)}")
