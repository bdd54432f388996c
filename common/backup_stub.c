#include "backup.h"
int ws_backup_list(const struct ws_config *cfg, int json, struct ws_error *err){(void)cfg;(void)json;return ws_error_set(err,WS_ERR_INTERNAL,"todo");}
int ws_backup_restore(const struct ws_config *cfg, const struct ws_restore_opts *o, struct ws_error *err){(void)cfg;(void)o;return ws_error_set(err,WS_ERR_INTERNAL,"todo");}
int ws_backup_verify(const struct ws_config *cfg, const char *id, int all, struct ws_error *err){(void)cfg;(void)id;(void)all;return ws_error_set(err,WS_ERR_INTERNAL,"todo");}
int ws_backup_check(const struct ws_config *cfg, struct ws_error *err){(void)cfg;return ws_error_set(err,WS_ERR_INTERNAL,"todo");}
