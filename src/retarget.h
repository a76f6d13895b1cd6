/*
 * retarget.h
 *    A query text rewritten to read another table: advise costs a GIN candidate on a sampled
 *    temporary copy of a table by running the query against the copy.
 */
#ifndef PGTURBO_RETARGET_H
#define PGTURBO_RETARGET_H

/*
 * text (borrowed) with every reference to table (as written: schema "" for the unqualified
 * ones) replaced by replacement, e.g. a temporary copy "pg_temp.sample_users". Caller frees;
 * NULL when the text does not parse, names no such table, or memory runs out.
 */
char *retarget_table(const char *text, const char *schema, const char *table,
                     const char *replacement);

#endif /* PGTURBO_RETARGET_H */
