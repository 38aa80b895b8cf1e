// The base filtering engine: transactions (explicit, and the implicit one around every write),
// and the notifyFn calls their end owes the registered callouts.
//
// When callouts hear about filters (R5.8–R5.10; the order within a transaction is lfp's choice,
// WFP documents none):
// * ADD_FILTER when the filter is added, inside the transaction, so its answer can refuse the add.
// * DELETE_FILTER when a delete takes effect, i.e. when its transaction commits: a delete that is
//   aborted was never announced, so the callout never frees state for a filter that stays.
// * ADD_FILTER_POST_COMMIT after the commit, for the filters the callout saw added, only to
//   callouts that ask for it.
// * DELETE_FILTER when a transaction that added filters is thrown away (abort, refused commit,
//   failed write, session close): the callout saw ADD_FILTER for a filter that never comes.
// All but ADD_FILTER are delivered after the engine lock is released.

import Foundation

extension BaseFilteringEngine {
    /// FwpmTransactionBegin0 (R8.11). lfp never waits for the transaction lock: when another
    /// session holds a read/write transaction, Begin fails at once with FWP_E_TIMEOUT.
    public func beginTransaction(_ s: SessionHandle? = nil, readOnly: Bool = false) throws {
        try locked {
            let h = s ?? defaultSession
            guard var st = sessions[h] else { throw FWPError(.invalidParameter, "\(h) is not open") }
            if st.txn != nil { throw FWPError(.txnInProgress, "\(h) already has a transaction in progress") }
            if !readOnly {
                if let o = writeOwner, o != h { throw FWPError(.timeout, "another session (\(o)) holds the transaction lock") }
                writeOwner = h
            }
            st.txn = Txn(readOnly: readOnly, working: committed)
            sessions[h] = st
        }
    }

    /// FwpmTransactionCommit0. Callouts get DELETE_FILTER and ADD_FILTER_POST_COMMIT afterwards (R5.8).
    public func commitTransaction(_ s: SessionHandle? = nil) throws {
        var notices: [PendingNotify] = []
        defer { deliver(notices) }  // after the lock is released
        try locked {
            let h = s ?? defaultSession
            guard var st = sessions[h] else { throw FWPError(.invalidParameter, "\(h) is not open") }
            guard let txn = st.txn else { throw FWPError(.noTxnInProgress, "\(h) has no transaction to commit") }
            st.txn = nil
            sessions[h] = st
            guard !txn.readOnly else { return }
            writeOwner = nil
            // A commit the gate refuses ends the transaction with nothing applied (ACID, R8.12).
            do { try gate(txn.working) } catch {
                notices = abandonNotices(txn.working, base: committed)
                throw error
            }
            notices = install(txn.working)
        }
    }

    /// FwpmTransactionAbort0. Callouts get DELETE_FILTER for the filters the transaction added.
    public func abortTransaction(_ s: SessionHandle? = nil) throws {
        var notices: [PendingNotify] = []
        defer { deliver(notices) }
        try locked {
            let h = s ?? defaultSession
            guard var st = sessions[h] else { throw FWPError(.invalidParameter, "\(h) is not open") }
            guard let txn = st.txn else { throw FWPError(.noTxnInProgress, "\(h) has no transaction to abort") }
            if !txn.readOnly { writeOwner = nil }
            st.txn = nil
            sessions[h] = st
            notices = abandonNotices(txn.working, base: committed)
        }
    }

    /// Runs a write in the session's transaction (explicit or implicit). The store is only
    /// replaced when `body` succeeds, so a failing call changes nothing and does not poison an
    /// explicit transaction (R4.17, R8.12).
    func write<R>(_ s: SessionHandle?, _ body: (inout Store, SessionHandle, SessionState) throws -> R) throws -> R {
        var notices: [PendingNotify] = []
        defer { deliver(notices) }
        return try locked {
            let h = s ?? defaultSession
            guard let st = sessions[h] else { throw FWPError(.invalidParameter, "\(h) is not open") }
            if let txn = st.txn {
                if txn.readOnly { throw FWPError(.incompatibleTxn, "write inside a read-only transaction (FWPM_TXN_READ_ONLY)") }
                var work = txn.working
                do {
                    let r = try body(&work, h, st)
                    sessions[h]!.txn!.working = work
                    return r
                } catch {
                    // `work` keeps what body did before it failed (an inout argument is written
                    // back on throw): a policy load may have had filters accepted before one failed.
                    notices = abandonNotices(work, base: txn.working)
                    throw error
                }
            }
            if let o = writeOwner, o != h { throw FWPError(.timeout, "another session (\(o)) holds the transaction lock") }
            var work = committed
            do {
                let r = try body(&work, h, st)
                try gate(work)
                notices = install(work)
                return r
            } catch {
                notices = abandonNotices(work, base: committed)
                throw error
            }
        }
    }

    /// The store a read in session `s` sees (its transaction's working copy, else committed).
    func view(_ s: SessionHandle?) -> Store {
        locked {
            if let h = s, let txn = sessions[h]?.txn { return txn.working }
            return committed
        }
    }
}
