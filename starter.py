"""The command line for order sources, support staff, carriers and operators.

    python starter.py migrate | catalog load FILE [--if-empty] | stock [--sku SKU] [--json]
    python starter.py place FILE|- [--wait] | status ID [--json] | list [--status S] [--customer C] [--limit N] [--page T | --all] [--json]
    python starter.py import FILE|- [--format csv|jsonl] [--json]
    python starter.py import-history FILE|DIR --format olist|online-retail [--warehouse CODE] [--json]
    python starter.py deliver ID [--shipment ID] | feedback ID --score 1-5 [--comment TEXT]
    python starter.py warehouse queue WH [--json] | warehouse pick SHIPMENT [--line SKU=QTY ...] [--id REPORT_ID]
    python starter.py warehouse pack SHIPMENT --parcel WEIGHT_G [--parcel WEIGHT_G ...] [--id REPORT_ID]
    python starter.py warehouse handover SHIPMENT [--id REPORT_ID]
    python starter.py carrier-event TRACKING TYPE [--at TIME] [--id ID] [--place TEXT] [--attempt N]
    python starter.py resolve ORDER_ID SHIPMENT_ID --reship|--refund
    python starter.py cancel ID --reason TEXT | release ID | note ID TEXT
    python starter.py return ID --sku SKU --qty N --reason TEXT [--exchange-sku SKU]
    python starter.py receive-return ID RMA [--condition good|damaged] | blocklist add|remove|list [EMAIL]
    python starter.py stock check | stock adjust SKU WH DELTA --reason TEXT | stock receive SKU WH QTY [--po ID]
    python starter.py stock write-off SKU WH QTY --reason TEXT

    python starter.py purchase-orders [--json]
    python starter.py reconcile [--json] [--dry-run]
    python starter.py forecast [--sku SKU] [--as-of YYYY-MM-DD] [--apply] [--json]
    python starter.py apikey create --role source|support|carrier|warehouse|admin --name N [--json]
    python starter.py apikey revoke NAME | apikey list
    python starter.py codec keys | codec rotate | codec generate | codec audit [--limit N] [--json]
    python starter.py report [--since DATE] [--until DATE] [--html FILE] [--json]
    python starter.py export journal --since DATE --until DATE FILE.csv
    python starter.py versions [--deployment NAME] [--json] | set-current-version BUILD_ID [--deployment NAME]
    python starter.py doctor


Exit status: 0 done, 1 refused or unknown order (and `place --wait`: the order was rejected) or Temporal
unavailable as configured, 2 invalid input.

The commands live in cli/, one module per group (cli/__init__.py lists them); this file is the entry point.
"""

from cli import main

if __name__ == "__main__":
    main()
