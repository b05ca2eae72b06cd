# Every python kernel runs this file at start (ipython_kernel_config.py's exec_files) in the
# user's namespace: one expression, so that it leaves no name there. startup.py does the work
# in a globals dict of its own, which its formatters keep alive.
exec(compile(open("/opt/cove/code-interpreter/startup.py").read(), "startup.py", "exec"), {"__name__": "cove_startup"})
