/* cove-agent: a request frame to its handler (spec/agent-protocol.md §3), and which header
 * flags each type takes. The poll loop (loop.c) calls it for every frame of the host. */
#include "agent.h"

/* Only requests that open a file operation take F_ELEVATED; only READ and WRITE take F_DIRECT. */
int agent_flags_ok(uint8_t type, uint8_t flags)
{
	int fs = (type >= T_STAT && type <= T_REMOVE) || type == T_READ || type == T_WRITE ||
		 type == T_WATCH || type == T_SETMETA;
	int stream = type == T_READ || type == T_WRITE;
	return !flags || (fs && !(flags & ~(F_ELEVATED | F_DIRECT)) && (stream || !(flags & F_DIRECT)));
}

void agent_dispatch(uint8_t type, uint32_t id, struct rd *r)
{
	switch (type) {
	case T_PING:
		if (!rd_done(r))
			return protocol_violation("ping");
		send_ok(id);
		return;
	case T_CANCEL:
		if (!rd_done(r))
			return protocol_violation("cancel");
		if (!fs_cancel(id))
			watch_cancel(id);
		return;
	case T_SPAWN: return proc_spawn(id, r);
	case T_STDIN: return proc_stdin(id, r);
	case T_CLOSE_STDIN: return proc_close_stdin(id, r);
	case T_SIGNAL: return proc_signal(id, r);
	case T_RESIZE: return proc_resize(id, r);
	case T_LIST_PROCS: return proc_list(id, r);
	case T_ATTACH: return proc_attach(id, r);
	case T_STAT: return fs_stat(id, r);
	case T_LISTDIR: return fs_listdir(id, r);
	case T_MKDIR: return fs_mkdir(id, r);
	case T_RENAME: return fs_rename(id, r);
	case T_REMOVE: return fs_remove(id, r);
	case T_READ: return fs_read(id, r);
	case T_CREDIT: return fs_credit(id, r);
	case T_WRITE: return fs_write(id, r);
	case T_WDATA: return fs_wdata(id, r);
	case T_WEND: return fs_wend(id, r);
	case T_WATCH: return watch_start(id, r);
	case T_SETMETA: return fs_setmeta(id, r);
	default: return protocol_violation("unknown type");
	}
}
