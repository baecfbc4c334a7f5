/* ukrun's own C: only what Python cannot reach.  Read by cffi as a cdef, so it
 * holds plain prototypes and nothing cffi cannot parse (no includes, no guards).
 * Contract of every function: returns >= 0, or -1 with errno set; never prints. */

const char *ukrun_version(void);
