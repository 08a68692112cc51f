"""The stand-ins for outside parties: the payment gateway, the warehouse, the carrier, the supplier and
the mailer, each implementing its interface in adapters/ (a real integration implements the same),
and the sandbox warehouse's and carrier's workflows and activities, which run on a task queue of their
own (Settings.sandbox_task_queue; worker.py runs them unless OMS_SANDBOX_PARTIES=false)."""
