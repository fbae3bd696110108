"""aegir's task namespaces, assembled into the collection `tasks.py` exposes.

One module per namespace (its docstring is the namespace help), assembled here in runbook order.
"""

from invoke import Collection

from aegir.tasks import apps, boot, core, disk, dns, fw, mysql, net, update

namespace = Collection()
namespace.add_collection(disk.ns)
namespace.add_collection(boot.ns)
namespace.add_collection(fw.ns)
namespace.add_collection(core.ns)
namespace.add_collection(apps.ns)
namespace.add_collection(update.ns)
namespace.add_collection(net.ns)
namespace.add_collection(dns.ns)
namespace.add_collection(mysql.ns)
