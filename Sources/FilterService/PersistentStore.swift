// Persistent objects (FWPM_*_FLAG_PERSISTENT, and boot-time filters) in SQLite through GRDB.
//
// One row per object: its key, kind, and body, a one-object policy document (the policy-file
// schema, JSON). Rows are never renumbered, so `rowid` order is creation order, which decides
// ties between sublayers of equal weight when the daemon restores them. filterIds are not
// stored: they are runtime ids, assigned per boot (R8.6).

import FilterModel
import Foundation
import GRDB
import ServiceProtocol

final class PersistentStore {
    let path: String
    private let db: DatabaseQueue
    /// What the table holds, by key: the object as last written (to write only what changed).
    private var written: [UUID: AnyHashable] = [:]

    init(path: String) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        // Root's alone: persistent policy says what the machine protects (as the run state).
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var config = Configuration()
        config.label = "lfp.store"
        db = try DatabaseQueue(path: path, configuration: config)
        chmod(path, 0o600)
        try db.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS object (
                        key TEXT PRIMARY KEY NOT NULL,
                        kind TEXT NOT NULL,
                        body TEXT NOT NULL)
                    """)
            try db.execute(sql: "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)")
            try db.execute(sql: "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', '1')")
        }
    }

    /// Every stored object, as one policy document in creation order.
    func load() throws -> Policy {
        let rows = try db.read { db in try Row.fetchAll(db, sql: "SELECT key, kind, body FROM object ORDER BY rowid") }
        var policy = Policy()
        for row in rows {
            let body: String = row["body"]
            let key: String = row["key"]
            let one = try Policy.parse(body, sourceName: "\(path): object \(key)")
            policy.providers += one.providers
            policy.sublayers += one.sublayers
            policy.callouts += one.callouts
            policy.providerContexts += one.providerContexts
            policy.filters += one.filters
        }
        for p in policy.providers { written[p.providerKey] = p }
        for s in policy.sublayers { written[s.subLayerKey] = s }
        for c in policy.callouts { written[c.calloutKey] = c }
        for c in policy.providerContexts { written[c.providerContextKey] = c }
        for f in policy.filters { written[f.filterKey] = Self.stored(f) }
        return policy
    }

    /// A filter as stored: without its runtime id and computed weight.
    private static func stored(_ f: Filter) -> Filter {
        var f = f
        f.filterId = 0
        f.effectiveWeight = 0
        return f
    }

    /// Makes the table hold exactly the persistent objects of `engine`, then runs `then` inside
    /// the same SQLite transaction: if `then` throws (the kernel refused the policy), the table
    /// is left as it was.
    func sync(_ engine: BaseFilteringEngine, snapshot all: Policy, then: () throws -> Void) throws {
        var want: [(UUID, ObjectKind, AnyHashable, Policy)] = []
        func persistent(_ k: UUID) -> Bool { engine.lifetime(ofObject: k) == .persistent }
        for p in all.providers where persistent(p.providerKey) { want.append((p.providerKey, .provider, p, Policy(providers: [p]))) }
        for s in all.sublayers where persistent(s.subLayerKey) { want.append((s.subLayerKey, .sublayer, s, Policy(sublayers: [s]))) }
        for c in all.callouts where persistent(c.calloutKey) { want.append((c.calloutKey, .callout, c, Policy(callouts: [c]))) }
        for c in all.providerContexts where persistent(c.providerContextKey) {
            want.append((c.providerContextKey, .providerContext, c, Policy(providerContexts: [c])))
        }
        for f in all.filters where persistent(f.filterKey) {
            let s = Self.stored(f)
            want.append((f.filterKey, .filter, s, Policy(filters: [s])))
        }
        let wantKeys = Set(want.map(\.0))
        let gone = written.keys.filter { !wantKeys.contains($0) }
        let changed = want.filter { written[$0.0] != $0.2 }
        if gone.isEmpty && changed.isEmpty {
            try then()
            return
        }
        try db.write { db in
            for k in gone { try db.execute(sql: "DELETE FROM object WHERE key = ?", arguments: [k.lowerString]) }
            for (k, kind, _, doc) in changed {
                // An upsert keeps the row (and its creation order) of an object that changed.
                try db.execute(
                    sql: "INSERT INTO object (key, kind, body) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET body = excluded.body",
                    arguments: [k.lowerString, kind.rawValue, doc.exportJSON()])
            }
            try then()
        }
        for k in gone { written[k] = nil }
        for (k, _, obj, _) in changed { written[k] = obj }
    }

    var count: Int { written.count }
}
