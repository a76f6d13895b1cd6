/*
 * test_workload.c
 *    Unit tests of the repair of pg_stat_statements texts whose typed literals lost their
 *    constant (interval '1 day' kept as interval $1).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "workload.h"

#include <stdlib.h>
#include <string.h>

static void assert_repaired(const char *text, const char *expected)
{
    char *got = workload_repair_text(text);
    if (expected == NULL) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, expected);
    free(got);
}

static void test_typed_literals_become_casts(void **state)
{
    assert_repaired("SELECT * FROM t WHERE created_at > now() - interval $1",
                    "SELECT * FROM t WHERE created_at > now() - $1::interval");
    assert_repaired("SELECT * FROM t WHERE d = DATE $1 AND ts < timestamp with time zone $2",
                    "SELECT * FROM t WHERE d = $1::DATE AND ts < $2::timestamp with time zone");
    assert_repaired("SELECT jsonb $10 @> x, uuid  $2 FROM t",
                    "SELECT $10::jsonb @> x, $2::uuid FROM t");
}

static void test_other_parameters_stay(void **state)
{
    assert_repaired("SELECT * FROM t WHERE a = $1 AND b IN ($2, $3) LIMIT $4 OFFSET $5", NULL);
    assert_repaired("SELECT $1::interval, CAST($2 AS date), 'interval $3', \"date\" $4", NULL);
    assert_repaired("SELECT t.date $1", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_literals_become_casts),
        cmocka_unit_test(test_other_parameters_stay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
