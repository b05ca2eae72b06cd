# IPython config for every kernel in the sandbox (installed as /etc/ipython/ipython_kernel_config.py,
# which IPython reads for every user before the user's own profile).
c = get_config()  # noqa: F821
# Tracebacks go to clients as text: ANSI colour codes would only clutter them.
c.InteractiveShell.colors = "NoColor"
# Cove's formatters and patches (DataFrame data, JSON for lists and dicts, PIL images).
c.InteractiveShellApp.exec_files = ["/opt/cove/code-interpreter/kernel_init.py"]
# Whole values in text results, as E2B's template configures it (IPython cuts at 1000 items).
c.PlainTextFormatter.max_seq_length = 0
